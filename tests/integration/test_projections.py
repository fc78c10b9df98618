"""Projection runner and the version-history read model against real Postgres and JetStream:
redelivery, scale-out, poison events, read-your-writes, status and rebuild."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.commands import IngestVersion
from core.content import encode_content
from core.errors import Timeout
from core.events import (
    NewEvent,
    RecordedEvent,
    VersionIngested,
)
from core.history import HistoryQueries
from core.history_pg import HistoryReader
from core.jetstream import partition_of, subject_for
from core.ports import AppendBatch
from core.settings import Settings
from projections.leases import PartitionLeases, lock_key
from projections.parking import ParkingLot
from projections.rebuild import rebuild
from projections.runner import ProjectionWorker
from projections.status import projection_status
from projections.version_history import TABLES, VersionHistoryProjection
from tests.conftest import role_process
from tests.integration.streams import System, open_system, running, wait_until
from tests.integration.workload import append_interleaved, history

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system




def worker(system: System) -> ProjectionWorker:
    assert system.settings.database_url
    leases = PartitionLeases(system.settings.database_url, "version_history",
                             system.settings.partitions)
    return ProjectionWorker(VersionHistoryProjection(system.pool), system.js, system.settings,
                            leases, ParkingLot(system.pool), rebalance_interval=0.2)


def relay_and_worker(system: System) -> list[Any]:
    return [system.relay(poll_interval=0.05).run, worker(system).run]


async def snapshot(system: System) -> dict[str, list[tuple[Any, ...]]]:
    tables = {}
    async with system.pool.connection() as conn:
        for table in TABLES:
            cur = await conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4")
            tables[table] = [tuple(str(v) for v in row) for row in await cur.fetchall()]
    return tables


async def caught_up(system: System) -> bool:
    status = await projection_status(VersionHistoryProjection(system.pool), system.pool,
                                     system.js, system.settings)
    return status.lag == 0 and status.head > 0


async def test_redelivered_and_overlapping_batches_change_nothing(system: System) -> None:
    await append_interleaved(system, history(3, 5))
    events = await system.store.read_after(0, 1000)
    projection = VersionHistoryProjection(system.pool)
    by_partition: dict[int, list[RecordedEvent]] = {}
    for e in events:
        by_partition.setdefault(partition_of(e.namespace, e.name, 4), []).append(e)
    for partition, batch in by_partition.items():
        await projection.apply(partition, batch)
    once = await snapshot(system)
    for partition, batch in by_partition.items():
        await projection.apply(partition, batch)  # redelivered whole
        await projection.apply(partition, batch[len(batch) // 2:])  # and in part
    assert await snapshot(system) == once
    assert len(once["vh_artifacts"]) == 3
    assert len(once["vh_versions"]) == 15


async def test_read_model_follows_the_log_and_status_reports_lag(system: System) -> None:
    await append_interleaved(system, history(5, 8))
    lagging = await projection_status(VersionHistoryProjection(system.pool), system.pool,
                                      system.js, system.settings)
    assert lagging.lag == lagging.head > 0
    assert lagging.lag_seconds is not None
    assert lagging.lag_seconds >= 0
    async with running(*relay_and_worker(system)):
        await wait_until(lambda: caught_up(system), within=30)
    done = await projection_status(VersionHistoryProjection(system.pool), system.pool,
                                   system.js, system.settings)
    assert (done.position, done.lag, done.lag_seconds) == (done.head, 0, 0.0)
    reader = HistoryReader(system.pool)
    state = await system.service.load("ns", "a3")
    stored = await reader.versions_page("ns", "a3", stage=None, after_number=0, limit=100)
    assert [(v.number, v.stage) for v in stored[0]] == [
        (v.number, v.stage) for v in state.versions]
    summary = await reader.artifact("ns", "a3")
    assert summary is not None
    assert summary.production_number == state.production


async def test_min_position_waits_for_the_read_model_or_times_out(system: System) -> None:
    result = await system.service.ingest(IngestVersion("ns", "rw", text="hello"))
    queries = HistoryQueries(HistoryReader(system.pool), system.service, read_wait_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(Timeout) as raised:
        await queries.artifact("ns", "rw", min_position=result.position)
    assert raised.value.code == "TIMEOUT"
    assert time.monotonic() - started < 2
    assert await queries.artifact("ns", "rw") is None  # not projected yet: nothing to show
    queries.read_wait_seconds = 20
    async with running(*relay_and_worker(system)):
        view = await queries.artifact("ns", "rw", min_position=result.position)
        assert view is not None
        latest = await view.latest()
        assert latest is not None
        assert latest.number == 1


async def test_poison_events_are_parked_and_others_go_on(system: System) -> None:
    good = [NewEvent("ns", "good", i, VersionIngested(
        number=i, kind="k", label=f"v{i}", digest=f"g{i}", size=1, media_type=None,
        content_type="json")) for i in (1, 2)]
    # The log accepts this, the read model cannot: two versions with the same label.
    bad = [NewEvent("ns", "bad", i, VersionIngested(
        number=i, kind="k", label="same", digest=f"b{i}", size=1, media_type=None,
        content_type="json")) for i in (1, 2, 3)]
    content = encode_content(content=1, max_bytes=10)
    await system.store.append(AppendBatch([bad[0], good[0], bad[1], good[1], bad[2]], [content]))
    await system.js.publish(subject_for(system.settings, "ns", "junk"), b"{not json",
                            headers={"Nats-Msg-Id": "junk-1"})
    async with running(*relay_and_worker(system)):
        await wait_until(lambda: _parked(system, 3), within=30)
        reader = HistoryReader(system.pool)
        await wait_until(lambda: _has_version(reader, "good", 2), within=30)
    parked = await ParkingLot(system.pool).list("version_history")
    assert sorted((p.name or "", p.position > 0) for p in parked) == [
        ("", False), ("bad", True), ("bad", True)]
    assert any("UniqueViolation" in p.error for p in parked)
    assert any("blocked behind" in p.error for p in parked)
    assert any("undecodable" in p.error for p in parked)
    stored_bad = await HistoryReader(system.pool).versions_page(
        "ns", "bad", stage=None, after_number=0, limit=10)
    assert [v.number for v in stored_bad[0]] == [1]
    status = await projection_status(VersionHistoryProjection(system.pool), system.pool,
                                     system.js, system.settings)
    assert status.parked == 3


async def _parked(system: System, count: int) -> bool:
    return len(await ParkingLot(system.pool).list("version_history")) >= count


async def _has_version(reader: HistoryReader, name: str, number: int) -> bool:
    return await reader.version("ns", name, number=number) is not None


async def test_rebuild_equals_the_live_projection(system: System) -> None:
    await append_interleaved(system, history(20, 10))
    async with running(*relay_and_worker(system)):
        await wait_until(lambda: caught_up(system), within=30)
        live = await snapshot(system)
        result = await rebuild(VersionHistoryProjection(system.pool), system.store,
                               system.settings)
        assert await snapshot(system) == live
        assert result.events == len(await system.log_ids())
        partial = await rebuild(VersionHistoryProjection(system.pool), system.store,
                                system.settings, from_position=live_position(live) - 5)
        assert 0 < partial.events < result.events
        assert await snapshot(system) == live


def live_position(tables: dict[str, list[tuple[Any, ...]]]) -> int:
    return max(int(row[6]) for row in tables["vh_artifacts"])


@pytest.mark.slow
async def test_three_worker_processes_equal_a_single_worker_rebuild(system: System) -> None:
    total = await append_interleaved(system, history(200, 40))
    assert total >= 10_000
    workers = [role_process(system.settings, "projection", "--name", "version_history")
               for _ in range(3)]
    try:
        # All three own partitions before the first event is published, so they share the work.
        await wait_until(lambda: _partitions_spread_over(system, 3), within=60, interval=0.2)
        async with running(system.relay(poll_interval=0.05).run):
            await wait_until(lambda: caught_up(system), within=120, interval=0.5)
        owners = await _owned_partitions(system)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        exit_codes = [proc.wait(30) for proc in workers]
    assert exit_codes == [0, 0, 0]
    assert owners == list(range(system.settings.partitions))
    three_workers = await snapshot(system)
    await rebuild(VersionHistoryProjection(system.pool), system.store, system.settings)
    assert await snapshot(system) == three_workers
    assert len(three_workers["vh_versions"]) == 200 * 40


async def _partitions_spread_over(system: System, workers: int) -> bool:
    key = lock_key("artifactlog:partitions:version_history")
    async with system.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid = %s::bigint::oid AND objsubid = 2 AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())", (key,))
        row = await cur.fetchone()
    return bool(row and row[0] == workers)


async def _owned_partitions(system: System) -> list[int]:
    assert system.settings.database_url
    leases = PartitionLeases(system.settings.database_url, "version_history", 4)
    await leases.open()
    try:
        return await leases.owners()
    finally:
        await leases.close()
