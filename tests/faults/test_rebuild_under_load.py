"""Fault 9: rebuild under load. While clients ingest and the live workers of both projections
(version history in Postgres, analytics in ClickHouse) apply, each projection is rebuilt from
the log, twice. Afterwards each equals a fresh rebuild, and ClickHouse holds no duplicate
rows (``count() - uniqExact(event_id)`` without FINAL: a rebuild must not leave inserts that
block deduplication or an ALTER DELETE could double)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from projections.analytics import AnalyticsProjection
from projections.rebuild import rebuild
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import (
    History,
    analyse,
    clickhouse_checksum,
    clickhouse_duplicates,
    converge,
)
from tests.faults.conftest import history_checksum, observe, produce, worker
from tests.faults.figures import scale
from tests.integration.streams import System, running

pytestmark = pytest.mark.anyio

REBUILDS = scale(2, 10)
# A bounded load: a rebuild replays until it reaches the head, so under an endless load it
# chases the producer (see RELIABILITY.md, findings).
INGESTS = scale(400, 20_000)
PAUSE = 0.005


async def test_rebuilds_under_load_equal_the_incremental_projection(
    system: System, analytics: AnalyticsProjection, figures: dict[str, Any],
) -> None:
    history = History()
    history_projection = VersionHistoryProjection(system.pool)
    rebuilt: list[tuple[str, int, float, bool]] = []
    async with running(system.relay(poll_interval=0.05).run, worker(system).run,
                       worker(system, analytics).run):
        producer = asyncio.create_task(produce(system, history, INGESTS, pause=PAUSE))
        for _ in range(REBUILDS):
            await asyncio.sleep(0.4)
            for projection in (history_projection, analytics):
                under_load = not producer.done()
                result = await rebuild(projection, system.store, system.settings)
                rebuilt.append((projection.name, result.events, round(result.seconds, 2),
                                under_load))
        await producer
        convergence = await converge(
            [(history_projection, history_checksum(system)),
             (analytics, clickhouse_checksum(analytics.clickhouse))],
            system.pool, system.settings, fault_ended=time.monotonic())
    duplicates = await clickhouse_duplicates(analytics.clickhouse)
    report = analyse(history, await observe(system, clickhouse=analytics.clickhouse))
    figures.update(report.figures(), rebuilds=rebuilt, clickhouse_count_minus_uniq=duplicates,
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert all(events > 0 for _, events, _, _ in rebuilt)
    assert {name for name, _, _, under_load in rebuilt if under_load} == {
        "version_history", "analytics"}
    assert duplicates == 0
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)
