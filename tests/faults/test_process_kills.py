"""Faults 4 and 5: `kill -9` of the relay process, and of the version-history worker process,
again and again while clients ingest. Nothing acknowledged is lost, nothing is doubled, and
the read model converges to a fresh rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from functools import partial
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from core.jetstream import JetStreamPublisher
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import History, analyse, converge
from tests.faults.conftest import Processes, history_checksum, observe, produce
from tests.faults.figures import scale
from tests.integration.streams import System, running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INGESTS = scale(5_000, 50_000)  # at most: the producer runs until the kills are done
KILLS = scale(4, 60)


async def test_relay_sigkilled_again_and_again_under_load(
    system: System, processes: Processes, figures: dict[str, Any],
) -> None:
    history, rng = History(), random.Random(4)
    settings = system.settings.with_overrides(relay_batch_size=20)
    projector = processes.start(settings, "projection", "--name", "version_history")
    stop = asyncio.Event()
    producer = asyncio.create_task(produce(system, history, INGESTS, pause=0.002, stop=stop))
    kills = between_publish_and_checkpoint = 0
    for _ in range(KILLS):
        published = len(await system.stream_messages())
        relay = processes.start(settings, "relay")
        await wait_until(partial(_grew, system, published), within=20, interval=0.005)
        await asyncio.sleep(rng.random() * 0.03)  # while it catches up on the backlog
        processes.kill(relay)
        kills += 1
        between_publish_and_checkpoint += await _stream_ahead_of_checkpoint(system)
        await asyncio.sleep(0.2 + rng.random() * 0.3)  # a backlog builds up meanwhile
    stop.set()
    await producer
    published_by_killed = len(await system.stream_messages())
    fault_ended = time.monotonic()
    relay = processes.start(settings, "relay")
    convergence = await converge(
        [(VersionHistoryProjection(system.pool), history_checksum(system))],
        system.pool, system.settings, fault_ended=fault_ended)
    report = analyse(history, await observe(system))
    figures.update(report.figures(), kills=kills,
                   killed_between_publish_and_checkpoint=between_publish_and_checkpoint,
                   published_by_killed_relays=published_by_killed,
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert report.acknowledged == report.log_events > 0
    assert published_by_killed > 0
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)
    assert Processes.terminate(relay, projector) == [0, 0]


async def _grew(system: System, published: int) -> bool:
    info = await system.js.stream_info(system.settings.stream_name)
    return bool(info.state.messages > published)


async def _stream_ahead_of_checkpoint(system: System) -> int:
    """1 if the killed relay had published past its checkpoint (died between the two)."""
    tail = await JetStreamPublisher(system.js, system.settings).tail()
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT coalesce(max(position), 0) FROM relay_checkpoints")
        row = await cur.fetchone()
    return int(tail is not None and row is not None and tail.position > row[0])


async def test_projection_worker_sigkilled_again_and_again_under_load(
    system: System, processes: Processes, figures: dict[str, Any],
) -> None:
    history, rng = History(), random.Random(5)
    settings = system.settings.with_overrides(projection_batch_size=20)
    projection = VersionHistoryProjection(system.pool)
    kills = mid_batch = 0
    async with running(system.relay(poll_interval=0.05).run):
        stop = asyncio.Event()
        producer = asyncio.create_task(produce(system, history, INGESTS, pause=0.002,
                                               stop=stop))
        for _ in range(KILLS):
            applied = await _applied(projection, system)
            proc = processes.start(settings, "projection", "--name", "version_history")
            await wait_until(partial(_moved, projection, system, applied), within=20,
                             interval=0.005)
            await asyncio.sleep(rng.random() * 0.03)  # while it works through the backlog
            mid_batch += await _unacked(system) > 0
            processes.kill(proc)
            kills += 1
            await asyncio.sleep(0.2 + rng.random() * 0.3)
        stop.set()
        await producer
        fault_ended = time.monotonic()
        proc = processes.start(settings, "projection", "--name", "version_history")
        convergence = await converge([(projection, history_checksum(system))],
                                     system.pool, system.settings, fault_ended=fault_ended)
    report = analyse(history, await observe(system))
    figures.update(report.figures(), kills=kills, killed_with_a_batch_unacked=mid_batch,
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert report.acknowledged == report.log_events > 0
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)
    assert Processes.terminate(proc) == [0]


async def _applied(projection: VersionHistoryProjection, system: System) -> int:
    return sum([await projection.checkpoint(p) for p in range(system.settings.partitions)])


async def _moved(projection: VersionHistoryProjection, system: System, applied: int) -> bool:
    return await _applied(projection, system) > applied


async def _unacked(system: System) -> int:
    """Messages delivered to the worker and not yet acknowledged, over all partitions."""
    total = 0
    for partition in range(system.settings.partitions):
        with contextlib.suppress(NotFoundError):
            info = await system.js.consumer_info(system.settings.stream_name,
                                                 f"version_history-p{partition}")
            total += info.num_ack_pending
    return total
