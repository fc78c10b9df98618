"""Two relay processes, one active through the Postgres advisory lock: `kill -9` the active one
under ingest and the standby takes over; the stream holds every event exactly once, in order.
Reports the takeover times (kill -> lock won, kill -> first message published)."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import pytest

from core.relay import active_relay
from tests.faults.checker import History, analyse
from tests.faults.conftest import Processes, observe, produce
from tests.integration.streams import System, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KILLS = 2


async def test_standby_relay_takes_over_when_the_active_one_is_killed(
    system: System, processes: Processes, figures: dict[str, Any],
) -> None:
    settings = system.settings.with_overrides(relay_batch_size=50)
    relays = {}
    for _ in range(2):
        proc = processes.start(settings, "relay")
        relays[f"artifactlog-relay-{proc.pid}"] = proc
    history, stop = History(), asyncio.Event()
    producer = asyncio.create_task(produce(system, history, 100_000, pause=0.002, stop=stop))
    lock_takeovers, publish_takeovers = [], []
    for _ in range(KILLS):
        await wait_until(partial(_connected, system, set(relays)), within=30, interval=0.02)
        await wait_until(partial(system.published_at_least, await system.published() + 50),
                         within=20, interval=0.01)
        active = await _active(system)
        assert active in relays
        processes.kill(relays.pop(active))
        killed = time.monotonic()
        published = await system.published()
        await wait_until(partial(_active_is_not, system, active), within=10, interval=0.005)
        lock_takeovers.append(time.monotonic() - killed)
        await wait_until(partial(system.published_at_least, published + 1), within=10,
                         interval=0.005)
        publish_takeovers.append(time.monotonic() - killed)
        assert await _active(system) in relays  # the standby, not a ghost of the dead one
        proc = processes.start(settings, "relay")  # a new standby for the next round
        relays[f"artifactlog-relay-{proc.pid}"] = proc
    stop.set()
    await producer
    log_head = len(await system.log_ids())
    await wait_until(partial(system.published_at_least, log_head), within=30)
    report = analyse(history, await observe(system, read_model=False))
    figures.update(report.figures(), kills=KILLS,
                   lock_takeover_seconds=[round(s, 3) for s in lock_takeovers],
                   publish_takeover_seconds=[round(s, 3) for s in publish_takeovers])
    assert report.problems() == {}
    assert report.acknowledged == report.log_events == await system.published() > 0
    assert max(publish_takeovers) < 2.0
    await wait_until(partial(_connected, system, set(relays)), within=30, interval=0.02)
    assert Processes.terminate(*relays.values()) == [0, 0]


async def _active(system: System) -> str | None:
    return await active_relay(system.pool, system.settings.stream_name)


async def _connected(system: System, relays: set[str]) -> bool:
    """Every relay has its leadership connection open (standing by or active)."""
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT application_name FROM pg_stat_activity")
        names = {row[0] for row in await cur.fetchall()}
    return relays <= names


async def _active_is_not(system: System, dead: str) -> bool:
    holder = await _active(system)
    return holder is not None and holder != dead


