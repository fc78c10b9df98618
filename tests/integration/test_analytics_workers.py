"""The analytics projection fed from JetStream by several workers at once, against the real
engines: the ClickHouse tables equal a single-worker rebuild from the log."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.clickhouse import ClickHouse
from core.settings import Settings
from projections.analytics import AnalyticsProjection
from projections.leases import PartitionLeases
from projections.parking import ParkingLot
from projections.rebuild import rebuild
from projections.runner import ProjectionWorker
from projections.status import projection_status
from tests.integration.streams import System, open_system, wait_until
from tests.integration.test_analytics import raw_counts, snapshot
from tests.integration.workload import append_interleaved, history

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


@pytest.fixture
async def database(chdb_path: Path) -> AsyncIterator[str]:
    name = f"w_{uuid.uuid4().hex[:12]}"
    yield name
    cleanup = ClickHouse(f"chdb://{chdb_path}")
    await cleanup.command(f"DROP DATABASE IF EXISTS {name}")
    await cleanup.close()


def analytics(chdb_path: Path, database: str, settings: Settings) -> AnalyticsProjection:
    return AnalyticsProjection(ClickHouse(f"chdb://{chdb_path}", database=database), settings)


async def test_three_workers_equal_a_single_worker_rebuild(
    system: System, chdb_path: Path, database: str
) -> None:
    total = await append_interleaved(system, history(100, 25))
    settings = system.settings
    assert settings.database_url
    projections = [analytics(chdb_path, database, settings) for _ in range(3)]
    workers = [ProjectionWorker(p, system.js, settings,
                                PartitionLeases(settings.database_url, p.name, 4),
                                ParkingLot(system.pool), rebalance_interval=0.2)
               for p in projections]
    stop, relay_go = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]

    async def relay_when_told() -> None:
        await relay_go.wait()
        await system.relay(poll_interval=0.05).run(stop)

    tasks.append(asyncio.create_task(relay_when_told()))
    try:
        # Every worker owns partitions before the first event is published.
        await wait_until(lambda: _all_own_partitions(workers), within=30)
        relay_go.set()
        await wait_until(lambda: _caught_up(system, projections[0]), within=120, interval=0.3)
    finally:
        stop.set()
        relay_go.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(w.applied for w in workers) == total
    assert all(w.applied > 0 for w in workers)  # the work really was shared
    reader = projections[0].clickhouse
    counts = await raw_counts(reader)
    assert counts["events"] == total  # no duplicates, even without FINAL
    live = await snapshot(reader)
    await rebuild(projections[0], system.store, settings)
    assert await snapshot(reader) == live
    for projection in projections:
        await projection.close()


async def _all_own_partitions(workers: list[ProjectionWorker]) -> bool:
    return all(w.loops for w in workers)


async def _caught_up(system: System, projection: AnalyticsProjection) -> bool:
    status = await projection_status(projection, system.pool, system.js, system.settings)
    return status.lag == 0
