"""Fault 6: SIGKILL and restart of nats-server (a dedicated one) while the relay publishes and
the version-history worker consumes. Nothing acknowledged is lost or doubled; the read model
converges to a rebuild. (The three-node cluster form is issue 9's; see RELIABILITY.md.)"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from core.runtime import EmbeddedNats, free_port
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import History, analyse, converge
from tests.faults.conftest import history_checksum, observe, produce, worker
from tests.faults.figures import scale
from tests.integration.streams import open_system, running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KILLS = scale(2, 20)


async def test_nats_server_sigkilled_and_restarted_while_publishing(
    fresh_settings: Settings, tmp_path: Path, figures: dict[str, Any],
) -> None:
    nats = EmbeddedNats(tmp_path / "nats", free_port())
    nats.start()
    history, downtime = History(), 0.0
    settings = fresh_settings.with_overrides(nats_url=nats.url, relay_batch_size=50)
    try:
        async with open_system(settings) as system, running(
                system.relay(batch_size=50, poll_interval=0.05).run, worker(system).run):
            stop = asyncio.Event()
            producer = asyncio.create_task(produce(system, history, scale(5_000, 100_000),
                                                   pause=0.002, stop=stop))
            for kill in range(KILLS):
                await wait_until(partial(system.published_at_least, 100 * (kill + 1)), within=30,
                                 interval=0.02)
                nats.kill()
                killed = time.monotonic()
                await asyncio.sleep(1.0)  # ingest goes on while the broker is down
                nats.start()
                downtime += time.monotonic() - killed
            fault_ended = time.monotonic()
            stop.set()
            await producer
            convergence = await converge(
                [(VersionHistoryProjection(system.pool), history_checksum(system))],
                system.pool, system.settings, fault_ended=fault_ended)
            report = analyse(history, await observe(system))
    finally:
        nats.stop()
    figures.update(report.figures(), kills=KILLS, broker_down_seconds=round(downtime, 1),
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert report.acknowledged == report.log_events > 0
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)


