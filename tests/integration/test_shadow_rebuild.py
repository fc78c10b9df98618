"""Zero-downtime rebuild (projections/shadow.py): both projections are rebuilt into shadow
tables while readers keep querying the live ones; every answer during the rebuild is the full,
correct one, and afterwards the tables equal a fresh in-place rebuild. A second test keeps
ingesting and the live workers running through a shadow rebuild: they go on from the rebuilt
checkpoints and the projection converges."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clickhouse import ClickHouse
from core.settings import Settings
from projections.analytics import AnalyticsProjection
from projections.leases import PartitionLeases
from projections.parking import ParkingLot
from projections.rebuild import Rebuilder, rebuild
from projections.runner import ProjectionWorker
from projections.shadow import RETIRED_SCHEMA, SHADOW_SCHEMA
from projections.version_history import TABLES, VersionHistoryProjection
from tests.faults.checker import clickhouse_checksum, pg_checksum
from tests.integration.streams import System, open_system, running, wait_until
from tests.integration.workload import append_interleaved, history

pytestmark = pytest.mark.anyio

Query = Callable[[], Awaitable[Any]]


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


@pytest.fixture
async def analytics(chdb_path: Path, fresh_settings: Settings
                    ) -> AsyncIterator[AnalyticsProjection]:
    database = f"s_{uuid.uuid4().hex[:12]}"
    projection = AnalyticsProjection(ClickHouse(f"chdb://{chdb_path}", database=database),
                                     fresh_settings)
    await projection.setup()
    yield projection
    await projection.clickhouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    await projection.close()


async def keep_querying(queries: dict[str, Query], stop: asyncio.Event
                        ) -> dict[str, list[Any]]:
    """Every answer of every query, asked in a loop until ``stop``."""
    answers: dict[str, list[Any]] = {name: [] for name in queries}
    while not stop.is_set():
        for name, query in queries.items():
            answers[name].append(await query())
        await asyncio.sleep(0.01)
    return answers


def pg_query(system: System, sql: str) -> Query:
    async def run() -> Any:
        async with system.pool.connection() as conn:
            cur = await conn.execute(sql)
            return await cur.fetchall()
    return run


def ch_query(clickhouse: ClickHouse, sql: str) -> Query:
    async def run() -> Any:
        return (await clickhouse.query(sql))[2]
    return run


async def layout(system: System) -> list[tuple[str, ...]]:
    """Schemas, tables, constraint and index names of the read model."""
    async with system.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT schemaname, tablename, indexname FROM pg_indexes WHERE tablename ="
            " ANY(%s) ORDER BY 1, 2, 3", (list(TABLES),))
        indexes = await cur.fetchall()
        cur = await conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
            ([SHADOW_SCHEMA, RETIRED_SCHEMA],))
        return [*indexes, *await cur.fetchall()]


def read_queries(system: System, reader: ClickHouse) -> dict[str, dict[str, Query]]:
    return {"version_history": {
        "versions": pg_query(system, "SELECT count(*), sum(number) FROM vh_versions"),
        "production": pg_query(system, "SELECT count(*) FROM vh_versions v JOIN vh_artifacts a"
                               " USING (namespace, name) WHERE v.number = a.production_number"),
        "checkpoints": pg_query(system, "SELECT partition, position FROM projection_checkpoints"
                                " WHERE projection = 'version_history' ORDER BY 1"),
    }, "analytics": {
        "events": ch_query(reader, "SELECT count(), max(position) FROM events"),
        "stages": ch_query(reader, "SELECT stage, count() FROM versions FINAL GROUP BY stage"
                           " ORDER BY stage"),
        "ingests": ch_query(reader, "SELECT sum(ingests) FROM ingest_stats_per_minute"),
    }}


# version_history gets the 50,000 events; analytics, whose replay is slower per event on a
# shared CI machine, fewer (same code path) to keep each test well under a minute.
@pytest.mark.parametrize(("name", "artifacts", "versions"), [
    ("version_history", 570, 70), ("analytics", 200, 50)])
async def test_queries_answer_throughout_a_shadow_rebuild(
    system: System, analytics: AnalyticsProjection, figures: dict[str, Any], name: str,
    artifacts: int, versions: int,
) -> None:
    appended = await append_interleaved(system, history(artifacts, versions))
    projection: Any = VersionHistoryProjection(system.pool) if name == "version_history" \
        else analytics
    await rebuild(projection, system.store, system.settings)  # the live tables, fresh
    checksum = pg_checksum(system.pool, TABLES) if name == "version_history" \
        else clickhouse_checksum(analytics.clickhouse)
    fresh = await checksum()
    before_layout = await layout(system)
    reader = ClickHouse(analytics.clickhouse.dsn, analytics.clickhouse.database)
    queries = read_queries(system, reader)[name]
    expected = {query: await run() for query, run in queries.items()}
    assert all(expected.values()), expected
    rebuilder = Rebuilder({name: projection}, system.store, system.settings)
    stop = asyncio.Event()
    readers = asyncio.create_task(keep_querying(queries, stop))
    try:
        result = await rebuilder.rebuild(name, shadow=True)
    finally:
        stop.set()
        answers = await readers
        await reader.close()
    figures.update(events=appended, shadow_seconds=round(result.seconds, 2),
                   queries_answered=sum(map(len, answers.values())))
    assert result.events == appended
    if name == "version_history":
        assert appended >= 50_000
    for query, seen in answers.items():
        assert len(seen) >= 10, query
        wrong = [answer for answer in seen if answer != expected[query]]
        assert wrong == [], (query, expected[query], wrong[:3])
    assert await checksum() == fresh
    assert await layout(system) == before_layout  # same names, no schema left behind


def worker(system: System, projection: Any) -> ProjectionWorker:
    assert system.settings.database_url
    leases = PartitionLeases(system.settings.database_url, projection.name,
                             system.settings.partitions)
    return ProjectionWorker(projection, system.js, system.settings, leases,
                            ParkingLot(system.pool), rebalance_interval=0.2)


async def test_live_workers_go_on_from_the_shadow_checkpoints_under_load(
    system: System, analytics: AnalyticsProjection,
) -> None:
    from core.commands import IngestVersion

    history_projection = VersionHistoryProjection(system.pool)
    rebuilder = Rebuilder({"version_history": history_projection, "analytics": analytics},
                          system.store, system.settings)
    stop_producing = asyncio.Event()
    ingested = 0

    async def produce() -> None:
        nonlocal ingested
        while not stop_producing.is_set():  # ingests keep coming throughout the rebuilds
            await system.service.ingest(IngestVersion("ns", f"a{ingested % 25}",
                                                      content={"i": ingested}))
            ingested += 1
            await asyncio.sleep(0.02)

    async with running(system.relay(poll_interval=0.05).run,
                       worker(system, history_projection).run, worker(system, analytics).run):
        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.5)
        for name in ("version_history", "analytics"):
            before = ingested
            result = await rebuilder.rebuild(name, shadow=True)
            assert result.events > 0
            assert ingested > before, "ingests went on during the rebuild"
        await asyncio.sleep(0.3)
        stop_producing.set()
        await producer
        head = await system.store.head_position()

        async def caught_up() -> bool:
            vh = [await history_projection.checkpoint(p) for p in range(4)]
            ch = [await analytics.checkpoint(p) for p in range(4)]
            return max(vh) == head and max(ch) == head
        await wait_until(caught_up, within=30)
    vh_sum, ch_sum = pg_checksum(system.pool, TABLES), clickhouse_checksum(analytics.clickhouse)
    live = {"version_history": await vh_sum(), "analytics": await ch_sum()}
    for projection in (history_projection, analytics):
        await rebuild(projection, system.store, system.settings)
    assert {"version_history": await vh_sum(), "analytics": await ch_sum()} == live
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM vh_versions")
        assert (await cur.fetchone()) == (ingested,)


async def test_the_live_stats_view_reads_the_rebuilt_events_after_the_swap(
    system: System, analytics: AnalyticsProjection,
) -> None:
    """Only tables are exchanged: the live ``ingest_stats_per_minute`` view stays (same
    uuid, same query, bound to ``<live>.events``) and answers from the rebuilt ``events``."""
    await append_interleaved(system, history(5, 4))
    await rebuild(analytics, system.store, system.settings)
    ch = analytics.clickhouse
    stats = "SELECT sum(ingests), sum(bytes) FROM ingest_stats_per_minute"
    view = ("SELECT uuid, engine, create_table_query FROM system.tables"
            " WHERE database = currentDatabase() AND name = 'ingest_stats_per_minute'")
    right, view_before = (await ch.query(stats))[2], (await ch.query(view))[2]
    assert right == [(20, 20 * 100 + 5 * sum(range(1, 5)))]
    assert view_before[0][1] == "View"
    assert f"FROM {ch.database}.events" in view_before[0][2]
    await analytics.reset({("ns", "a0")})  # the live tables go wrong: a0 is missing
    assert (await ch.query(stats))[2] != right
    await Rebuilder({"analytics": analytics}, system.store, system.settings).rebuild(
        "analytics", shadow=True)
    assert (await ch.query(stats))[2] == right  # the live view, over the swapped `events`
    assert (await ch.query(view))[2] == view_before
    _, _, databases = await ch.query("SELECT name FROM system.databases WHERE name = {n:String}",
                                     {"n": f"{ch.database}_shadow"})
    assert databases == []  # the retired tables are gone, and the view never read them


async def test_the_graphql_mutation_rebuilds_in_shadow_and_refuses_a_partial_shadow(
    system: System,
) -> None:
    from tests.integration.test_graphql_log import client_for, gql

    appended = await append_interleaved(system, history(5, 4))
    mutation = """mutation($name: String!, $from: Int, $shadow: Boolean!) {
      rebuildProjection(name: $name, fromPosition: $from, shadow: $shadow) { projection events
      } }"""
    async with client_for(system.store, system.settings) as http:
        body = await gql(http, mutation, name="version_history", shadow=True)
        assert body["data"]["rebuildProjection"] == {"projection": "version_history",
                                                     "events": appended}
        for variables, code in (({"name": "version_history", "from": 3}, "VALIDATION"),
                                ({"name": "nope"}, "NOT_FOUND")):
            body = await gql(http, mutation, shadow=True, **variables)
            assert body["errors"][0]["extensions"]["code"] == code, body
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM vh_versions")
        assert await cur.fetchone() == (20,)


async def test_a_failed_or_concurrent_shadow_rebuild_leaves_the_live_tables_alone(
    system: System,
) -> None:
    from psycopg import AsyncConnection

    from core.errors import Conflict
    from projections.rebuild import replay_after
    from projections.shadow import PostgresShadow, shadow_rebuild

    url = system.settings.database_url
    assert url
    await append_interleaved(system, history(5, 4))
    await rebuild(VersionHistoryProjection(system.pool), system.store, system.settings)
    checksum = pg_checksum(system.pool, TABLES)
    before, before_layout = await checksum(), await layout(system)

    class Failing(VersionHistoryProjection):
        async def apply(self, partition: int, events: Any, *, replaying: bool = False) -> None:
            if events[-1].position > 10:
                raise RuntimeError("boom")
            await super().apply(partition, events, replaying=replaying)

    async def apply_log(shadow: Any, after: int) -> tuple[int, int]:
        return await replay_after(shadow, system.store, system.settings, None, after)

    leases = PartitionLeases(url, "version_history", system.settings.partitions)
    with pytest.raises(RuntimeError, match="boom"):
        await shadow_rebuild(PostgresShadow(url, "version_history", TABLES, Failing),
                             apply_log, leases, url)
    assert (await checksum(), await layout(system)) == (before, before_layout)
    async with await AsyncConnection.connect(url, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s, 1)", (leases.maintenance_key,))
        with pytest.raises(Conflict, match="already running"):
            await shadow_rebuild(PostgresShadow(url, "version_history", TABLES,
                                                VersionHistoryProjection),
                                 apply_log, leases, url)
    assert (await checksum(), await layout(system)) == (before, before_layout)
