"""5. Projection and rebuild throughput, against raw chDB inserts of the analytics rows.

The workload (ingests with promotions and withdrawals, round-robin over 1,000 artifacts) is
appended to the log and published once onto a stream of its own (not timed: scenario 3 times
the relay). Each run then, for each projection: resets it and times a fresh worker consuming
the stream from the start until every partition's checkpoint has reached that partition's
last event; then times a rebuild from the log. The baseline inserts the analytics
projection's own rows for the same events into copies of its tables. The warm-up rebuilds
only the artifacts of the last few events (a full pass would cost minutes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bench.baselines import analytics_blocks, insert_chdb
from bench.common import at_least, ratio_at_least
from bench.harness import Bench, Local
from bench.payloads import Versions
from bench.scenarios.relay import append
from core.clickhouse import ClickHouse
from core.events import RecordedEvent
from core.jetstream import JetStreamPublisher, ensure_stream, partition_of
from core.relay import Relay
from projections.analytics import AnalyticsProjection
from projections.base import Projection
from projections.leases import PartitionLeases
from projections.parking import ParkingLot
from projections.rebuild import rebuild
from projections.runner import ProjectionWorker
from projections.version_history import VersionHistoryProjection

NAME = "projections"
TITLE = "5. Projections: consume and rebuild"
ARTIFACTS = 1000
EVENTS_PER_VERSION = 1.28  # with_stage_changes adds ~20% promotions and ~8% withdrawals


async def publish(local: Local, events: list[RecordedEvent]) -> None:
    await ensure_stream(local.js, local.settings)
    relay = Relay(local.pool, JetStreamPublisher(local.js, local.settings),
                  batch_size=local.settings.relay_batch_size, name="bench-projections")
    await relay.resume()
    relay.position = max(relay.position, events[0].position - 1)
    await relay.publish_pending()


async def consume(local: Local, projection: Projection, last: dict[int, int]) -> float:
    """Seconds a fresh worker takes from nothing applied to ``last`` in every partition."""
    assert local.settings.database_url
    await projection.reset()
    leases = PartitionLeases(local.settings.database_url, projection.name,
                             local.settings.partitions)
    worker = ProjectionWorker(projection, local.js, local.settings, leases,
                              ParkingLot(local.pool), rebalance_interval=0.1)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    try:
        while not task.done():
            marks = [await projection.checkpoint(p) for p in last]
            if all(mark >= last[p] for mark, p in zip(marks, last, strict=True)):
                return time.perf_counter() - started
            await asyncio.sleep(0.02)
        await task  # the worker died: raise its error
        raise RuntimeError("the projection worker stopped")
    finally:
        stop.set()
        await task


def partitioner(partitions: int) -> Callable[[RecordedEvent], int]:
    return lambda event: partition_of(event.namespace, event.name, partitions)


async def run(bench: Bench) -> None:
    events_wanted = bench.size(NAME, "events", quick=4_000, full=200_000)
    versions = max(1, round(events_wanted / ARTIFACTS / EVENTS_PER_VERSION))
    rates: dict[str, list[float]] = {}
    async with bench.local(stream_name="BENCH_PROJECTIONS",
                           subject_prefix="benchprojections") as local:
        events = await append(local, Versions("projections", ARTIFACTS, versions)
                              .with_stage_changes())
        bench.sizes[NAME]["events"] = len(events)
        await publish(local, events)
        of = partitioner(local.settings.partitions)
        last: dict[int, int] = {}
        for event in events:
            last[of(event)] = event.position
        blocks = analytics_blocks(events, of)
        dsn = local.settings.effective_clickhouse_url
        projections: list[Projection] = [VersionHistoryProjection(local.pool),
                                         AnalyticsProjection(ClickHouse(dsn), local.settings)]
        for projection in projections:
            await projection.setup()

        async def once(warmup: bool) -> None:
            if warmup:  # a full pass would cost minutes: every code path, on a few artifacts
                await insert_chdb(dsn, blocks[:1], len(events) // len(blocks))
                for projection in projections:
                    await rebuild(projection, local.store, local.settings,
                                  from_position=events[-10].position)
                return
            figures = {"raw": await insert_chdb(dsn, blocks, len(events))}
            for projection in projections:
                seconds = await consume(local, projection, last)
                figures[f"{projection.name} consume"] = len(events) / seconds
                rebuilt = await rebuild(projection, local.store, local.settings)
                figures[f"{projection.name} rebuild"] = rebuilt.events_per_second
            for key, value in figures.items():
                rates.setdefault(key, []).append(value)

        try:
            await bench.repeat(once)
        finally:
            for projection in projections:
                await projection.close()
        await local.js.delete_stream(local.settings.stream_name)
    report(bench, rates)


def report(bench: Bench, rates: dict[str, list[float]]) -> None:
    raw = bench.add(NAME, "raw chDB inserts of the analytics rows (baseline)", "events/s",
                    rates["raw"], note="blocks of 10,000 events, the same four tables, no "
                    "materialized view")
    for kind in ("consume", "rebuild"):
        bench.add(NAME, f"version history {kind}", "events/s",
                  rates[f"version_history {kind}"], goal=at_least(15_000))
    for kind in ("consume", "rebuild"):
        bench.add(NAME, f"analytics {kind}", "events/s", rates[f"analytics {kind}"],
                  goal=ratio_at_least(0.5), baseline=raw)
