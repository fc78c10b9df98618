"""The data behind the dashboard's charts, on the real Postgres: lag samples written once per
step however many replicas sample, pruned after a day, and ingests counted per minute."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from api.server import build_services
from core.activity_pg import ActivityReader
from core.commands import IngestVersion
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.jetstream import connect, ensure_stream
from core.lag_samples import LagSampler, LagSamples
from core.services import ArtifactService
from core.settings import Settings
from projections.version_history import VersionHistoryProjection

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Reading:
    name: str
    position: int
    head: int
    lag: int
    lag_seconds: float | None
    parked: int = 0


@pytest.fixture
async def pool(fresh_settings: Settings) -> AsyncIterator[AsyncConnectionPool]:
    """A database of its own: samples are global rows, not namespaced."""
    assert fresh_settings.database_url
    pool = await open_pool(fresh_settings.database_url)
    yield pool
    await pool.close()


async def count(pool: AsyncConnectionPool, where: str = "TRUE") -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM ops_lag_samples WHERE {where}")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_replicas_sampling_in_one_step_write_each_row_once(pool: AsyncConnectionPool
                                                                 ) -> None:
    # A day-long step: both "replicas" surely sample within the same one.
    samples = LagSamples(pool, step_seconds=86_400)
    readings = [Reading("version_history", 10, 12, 2, 0.5), Reading("analytics", 7, 12, 5, 3.0)]
    written = await asyncio.gather(*(samples.record(readings) for _ in range(4)))
    assert sorted(written) == [0, 0, 0, 2]
    assert await count(pool) == 2
    assert await samples.slot_taken()
    series = await samples.series(24 * 60 + 1)
    assert {(s.projection, s.lag_events, s.lag_seconds) for s in series} == {
        ("version_history", 2, 0.5), ("analytics", 5, 3.0)}


async def test_a_sampler_skips_a_step_another_replica_sampled(pool: AsyncConnectionPool
                                                              ) -> None:
    samples = LagSamples(pool, step_seconds=86_400)
    measured: list[int] = []

    async def measure() -> list[Reading]:
        measured.append(1)
        return [Reading("version_history", 1, 1, 0, 0.0)]

    assert await LagSampler(samples, measure).sample_once() == 1
    assert await LagSampler(samples, measure).sample_once() == 0
    assert measured == [1]  # the second replica did not even measure


async def test_samples_older_than_a_day_are_pruned(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO ops_lag_samples (sampled_at, projection, position, head, lag_events)"
            " VALUES (now() - interval '25 hours', 'version_history', 1, 1, 0),"
            " (now() - interval '23 hours', 'version_history', 1, 1, 0)")
    assert await LagSamples(pool).prune() == 1
    assert await count(pool) == 1
    assert await count(pool, "sampled_at < now() - interval '24 hours'") == 0


async def test_the_sampler_records_real_lag_and_stops_promptly(fresh_settings: Settings,
                                                               pool: AsyncConnectionPool
                                                               ) -> None:
    assert fresh_settings.nats_url
    nc = await connect(fresh_settings.nats_url, name="sampler-test")
    try:
        js = nc.jetstream()
        await ensure_stream(js, fresh_settings)
        service = ArtifactService(PostgresEventStore(pool), max_content_bytes=1024)
        for i in range(3):
            await service.ingest(IngestVersion("s", "a", content=i))
        services = build_services(pool, js, fresh_settings,
                                  {"version_history": VersionHistoryProjection(pool)})
        # No relay or worker runs: the projection is 3 events behind the log head.
        sampler = LagSampler(services.lag_samples, services.status.projections_status)
        stop = asyncio.Event()
        task = asyncio.create_task(sampler.run(stop))
        deadline = time.monotonic() + 20
        while await count(pool) == 0:
            assert time.monotonic() < deadline, "no sample within 20 s"
            await asyncio.sleep(0.05)
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 2
    finally:
        await nc.close()
    [sample] = await services.lag_samples.series(5)
    assert (sample.projection, sample.lag_events) == ("version_history", 3)


async def test_a_failed_sample_is_logged_and_the_sampler_carries_on(
        pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def measure() -> list[Reading]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("nats went away")
        return [Reading("version_history", 1, 1, 0, 0.0)]

    samples = LagSamples(pool, step_seconds=1)
    stop = asyncio.Event()
    task = asyncio.create_task(LagSampler(samples, measure).run(stop))
    deadline = time.monotonic() + 10
    while await count(pool) == 0:
        assert time.monotonic() < deadline, "the sampler stopped after an error"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert "lag sample failed" in caplog.text
    assert "nats went away" in caplog.text


async def test_ingests_per_minute_count_the_window_and_the_caller_s_namespaces(
        pool: AsyncConnectionPool) -> None:
    service = ArtifactService(PostgresEventStore(pool), max_content_bytes=1024)
    for i in range(3):
        await service.ingest(IngestVersion("mine", "a", content=i))
    await service.ingest(IngestVersion("theirs", "b", content=0))
    activity = ActivityReader(pool)
    everything = await activity.ingests_per_minute(60)
    assert len(everything) == 60
    assert [m for m, _ in everything] == sorted(m for m, _ in everything)
    assert everything[-1][0] - everything[0][0] == timedelta(minutes=59)
    assert sum(n for _, n in everything) == 4
    assert sum(n for _, n in await activity.ingests_per_minute(5, namespaces={"mine"})) == 3
    assert sum(n for _, n in await activity.ingests_per_minute(5, namespaces={"none"})) == 0
    recent = await activity.recent_ingests(limit=2, namespaces={"mine"})
    assert [(a.namespace, a.number) for a in recent] == [("mine", 3), ("mine", 2)]


async def test_the_ingest_count_scans_only_above_a_sample_from_before_the_window(
        pool: AsyncConnectionPool) -> None:
    service = ArtifactService(PostgresEventStore(pool), max_content_bytes=1024)
    for i in range(3):
        await service.ingest(IngestVersion("ns", "a", content=i))
    # A sample from two hours ago that (as if) saw the log head at position 2: the count
    # then starts above it. Real samples never see a head this far ahead of their time;
    # this one shows the scan is bounded by position, not by reading the whole log.
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO ops_lag_samples (sampled_at, projection, position, head, lag_events)"
            " VALUES (now() - interval '2 hours', 'version_history', 2, 2, 0)")
    assert sum(n for _, n in await ActivityReader(pool).ingests_per_minute(60)) == 1
