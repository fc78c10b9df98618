"""The analytics projection and the read-only SQL service, against the real chDB engine.

chDB hosts one engine per process, on one data directory (opening another while a client is
open fails), so the whole session shares one directory and every test works in a database
of its own. Every client is closed by the end of the module, so no engine handle outlives it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.analytics_sql import EXAMPLE_QUERIES, ReadOnlySql
from core.clickhouse import ClickHouse
from core.errors import ArtifactlogError, LimitExceeded, Timeout, ValidationError
from core.events import (
    DomainEvent,
    RecordedEvent,
    VersionIngested,
    VersionKey,
    VersionPromoted,
    VersionWithdrawn,
    to_payload,
)
from core.jetstream import partition_of
from core.settings import Settings
from projections import analytics
from projections.analytics import COLUMNS, AnalyticsProjection, derive

pytestmark = pytest.mark.anyio

SETTINGS = Settings(partitions=4)
NS, A, B = "ml", "features", "ranker"  # A and B travel in different partitions (1 and 0)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def event(position: int, name: str, version: int, domain: DomainEvent,
          seconds: int) -> RecordedEvent:
    return RecordedEvent(
        position=position, event_id=uuid.uuid4(), namespace=NS, name=name,
        stream_version=version, type=domain.type_name, payload=to_payload(domain),
        metadata={"actor": "alice", "correlationId": str(uuid.uuid4())},
        recorded_at=T0 + timedelta(seconds=seconds))


def ingest(number: int, kind: str, size: int, parents: tuple[VersionKey, ...] = ()
           ) -> VersionIngested:
    return VersionIngested(
        number=number, kind=kind, label=f"v{number}", digest=f"sha256:{number}{kind}",
        size=size, media_type="application/json", content_type="json",
        metadata={"team": "ml", "rows": number * 10}, parents=parents, producer="trainer")


EVENTS: list[RecordedEvent] = [
    event(1, A, 1, ingest(1, "dataset", 100), 0),
    event(2, A, 2, ingest(2, "dataset", 200), 30),
    event(3, A, 3, ingest(3, "dataset", 300), 90),
    event(4, B, 1, ingest(1, "model", 50, (VersionKey(NS, A, 2),)), 100),
    event(5, A, 4, VersionPromoted(1, None, "first release"), 600),
    event(6, A, 5, VersionPromoted(3, 1, "better"), 900),
    event(7, A, 6, VersionWithdrawn(2, "bad rows"), 1000),
]
A_EVENTS = [e for e in EVENTS if e.name == A]

SNAPSHOT = {
    "events": "SELECT * EXCEPT (projected_at) FROM events FINAL ORDER BY position",
    "versions": "SELECT * FROM versions FINAL ORDER BY ALL",
    "promotions": "SELECT * FROM promotions FINAL ORDER BY ALL",
    "lineage_edges": "SELECT * FROM lineage_edges FINAL ORDER BY ALL",
    "ingest_stats_per_minute": "SELECT minute, namespace, kind, name, sum(ingests),"
                               " sum(bytes) FROM ingest_stats_per_minute GROUP BY ALL"
                               " ORDER BY ALL",
}


async def apply_all(projection: AnalyticsProjection, events: Sequence[RecordedEvent], *,
                    replaying: bool = False) -> None:
    """As the runner does: each partition's events in one batch, in position order."""
    partitions = sorted({partition_of(e.namespace, e.name, SETTINGS.partitions)
                         for e in events})
    for partition in partitions:
        batch = [e for e in events
                 if partition_of(e.namespace, e.name, SETTINGS.partitions) == partition]
        await projection.apply(partition, batch, replaying=replaying)


async def rows(clickhouse: ClickHouse, sql: str) -> list[tuple[Any, ...]]:
    _, _, result = await clickhouse.query(sql)
    return result


async def snapshot(clickhouse: ClickHouse) -> dict[str, list[tuple[Any, ...]]]:
    return {table: await rows(clickhouse, sql) for table, sql in SNAPSHOT.items()}


async def fingerprint(clickhouse: ClickHouse) -> list[tuple[Any, ...]]:
    """Every table's row count and an order-free hash of its raw rows, and the database's
    table list: a cheap "nothing changed" check."""
    parts = ", ".join(f"(SELECT (count(), groupBitXor(cityHash64(*))) FROM {table})"
                      for table in SNAPSHOT)
    return await rows(clickhouse, f"SELECT {parts}, (SELECT groupArraySorted(100)(name)"
                                  " FROM system.tables WHERE database = currentDatabase())")


async def raw_counts(clickhouse: ClickHouse) -> dict[str, int]:
    """Row counts without FINAL: what was actually inserted, duplicates included."""
    return {table: (await rows(clickhouse, f"SELECT count() FROM {table}"))[0][0]
            for table in SNAPSHOT}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so that module-scoped async fixtures (below) can exist."""
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
async def engine(chdb_path: Path) -> AsyncIterator[None]:
    """Holds the engine open through the module: chDB shuts it down when its last client
    closes, and starting it again costs more than most tests here."""
    keeper = ClickHouse(f"chdb://{chdb_path}")
    await keeper.query("SELECT 1")
    try:
        yield
    finally:
        await keeper.close()


@pytest.fixture
async def clickhouse(chdb_path: Path) -> AsyncIterator[ClickHouse]:
    database = f"t_{uuid.uuid4().hex[:12]}"
    adapter = ClickHouse(f"chdb://{chdb_path}", database=database)
    try:
        yield adapter
    finally:
        await adapter.command(f"DROP DATABASE IF EXISTS {database}")
        await adapter.close()


@pytest.fixture
async def projection(clickhouse: ClickHouse) -> AnalyticsProjection:
    projection = AnalyticsProjection(clickhouse, SETTINGS)
    await projection.setup()
    return projection


@pytest.fixture
async def loaded(projection: AnalyticsProjection) -> AnalyticsProjection:
    await apply_all(projection, EVENTS)
    return projection


# ------------------------------------------------------------------ the projection


async def test_setup_is_versioned_and_idempotent(projection: AnalyticsProjection) -> None:
    await projection.setup()
    applied = await rows(projection.clickhouse, "SELECT version FROM schema_migrations FINAL"
                                                " ORDER BY version")
    assert applied == [(1,), (2,), (3,), (4,)]
    assert (await rows(projection.clickhouse, "SELECT count() FROM schema_migrations")) == [(4,)]
    assert await engines(projection.clickhouse) == {
        "events": "ReplacingMergeTree", "versions": "ReplacingMergeTree",
        "promotions": "ReplacingMergeTree", "lineage_edges": "ReplacingMergeTree",
        "ingest_stats_per_minute": "View", "schema_migrations": "ReplacingMergeTree"}


async def engines(clickhouse: ClickHouse) -> dict[str, str]:
    return {str(name): str(engine) for name, engine in await rows(
        clickhouse, "SELECT name, engine FROM system.tables WHERE database = currentDatabase()")}


async def test_an_upgraded_database_gets_the_stats_view(
    clickhouse: ClickHouse, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database set up before migration 4 (summing table + materialized view), whose stats
    a batch inserted into `events` twice had already doubled (bug A), is migrated by the next
    setup: the view answers from `events` alone, right."""
    projection = AnalyticsProjection(clickhouse, SETTINGS)
    monkeypatch.setattr(analytics, "MIGRATIONS", analytics.MIGRATIONS[:3])
    await projection.setup()
    assert (await engines(clickhouse))["ingest_stats_per_minute_mv"] == "MaterializedView"
    await apply_all(projection, EVENTS)
    rows_of_a = derive(A_EVENTS, {}, 1)["events"]
    await clickhouse.insert("events", rows_of_a, COLUMNS["events"])  # the batch again
    doubled = await rows(clickhouse, SNAPSHOT["ingest_stats_per_minute"])
    assert sum(row[4] for row in doubled) == 4 + 3  # the old table counted A's ingests twice
    monkeypatch.undo()
    await projection.setup()
    assert await rows(clickhouse, "SELECT version FROM schema_migrations FINAL ORDER BY"
                                  " version") == [(1,), (2,), (3,), (4,)]
    found = await engines(clickhouse)
    assert found["ingest_stats_per_minute"] == "View"
    assert "ingest_stats_per_minute_mv" not in found
    assert await snapshot(clickhouse) == await _fresh_snapshot(clickhouse)
    await projection.setup()  # idempotent once migrated
    assert await snapshot(clickhouse) == await _fresh_snapshot(clickhouse)


@pytest.mark.parametrize("unrecorded", [(4,), (3,), (3, 4)])
async def test_migrations_3_and_4_can_run_again_over_the_view(
    projection: AnalyticsProjection, unrecorded: tuple[int, ...],
) -> None:
    """(4,): step 4 interrupted after creating the view (so not recorded) runs again over
    it. (3,) and (3, 4): a second process that read schema_migrations before the first
    finished runs step 3 after the view exists; step 3 is superseded, so it creates no
    materialized view into the view (without SUPERSEDED_BY, (3,) leaves one), and inserts
    into `events` go on working."""
    ch = projection.clickhouse
    await apply_all(projection, EVENTS[:4])
    await ch.command("ALTER TABLE schema_migrations DELETE WHERE version IN {v:Array(UInt32)}",
                     parameters={"v": list(unrecorded)}, settings={"mutations_sync": 2})
    await projection.setup()
    found = await engines(ch)
    assert found["ingest_stats_per_minute"] == "View"
    assert "ingest_stats_per_minute_mv" not in found
    await apply_all(projection, EVENTS)
    assert await snapshot(ch) == await _fresh_snapshot(ch)


async def test_events_inserted_twice_do_not_double_the_stats(
    loaded: AnalyticsProjection,
) -> None:
    """Bug A: a batch whose `events` rows were inserted a second time (a worker killed after
    the insert, the batch redelivered and re-inserted) counts once in every table."""
    ch = loaded.clickhouse
    before = await snapshot(ch)
    for partition in (1, 0):
        batch = [e for e in EVENTS
                 if partition_of(e.namespace, e.name, SETTINGS.partitions) == partition]
        await ch.insert("events", derive(batch, {}, partition)["events"], COLUMNS["events"])
    assert (await raw_counts(ch))["events"] == 2 * len(EVENTS)  # really there twice
    assert await snapshot(ch) == before


async def test_known_sequence(loaded: AnalyticsProjection) -> None:
    ch = loaded.clickhouse
    assert await rows(ch, "SELECT type, count() FROM events GROUP BY type ORDER BY type") == [
        ("VersionIngested", 4), ("VersionPromoted", 2), ("VersionWithdrawn", 1)]
    assert await rows(ch, "SELECT position, name, number, stage, kind, size, actor, partition"
                          " FROM events ORDER BY position") == [
        (1, A, 1, "DRAFT", "dataset", 100, "alice", 1),
        (2, A, 2, "DRAFT", "dataset", 200, "alice", 1),
        (3, A, 3, "DRAFT", "dataset", 300, "alice", 1),
        (4, B, 1, "DRAFT", "model", 50, "alice", 0),
        (5, A, 1, "PRODUCTION", "dataset", 100, "alice", 1),
        (6, A, 3, "PRODUCTION", "dataset", 300, "alice", 1),
        (7, A, 2, "WITHDRAWN", "dataset", 200, "alice", 1)]
    assert await rows(ch, "SELECT name, number, stage, label, kind, size, producer, metadata,"
                          " position FROM versions FINAL ORDER BY name, number") == [
        (A, 1, "SUPERSEDED", "v1", "dataset", 100, "trainer", '{"rows":10,"team":"ml"}', 6),
        (A, 2, "WITHDRAWN", "v2", "dataset", 200, "trainer", '{"rows":20,"team":"ml"}', 7),
        (A, 3, "PRODUCTION", "v3", "dataset", 300, "trainer", '{"rows":30,"team":"ml"}', 6),
        (B, 1, "DRAFT", "v1", "model", 50, "trainer", '{"rows":10,"team":"ml"}', 4)]
    assert await rows(ch, "SELECT name, number, previous, reason, actor, at, position"
                          " FROM promotions FINAL ORDER BY position") == [
        (A, 1, None, "first release", "alice", T0 + timedelta(seconds=600), 5),
        (A, 3, 1, "better", "alice", T0 + timedelta(seconds=900), 6)]
    assert await rows(ch, "SELECT * FROM lineage_edges FINAL") == [(NS, A, 2, NS, B, 1, 4)]
    assert await rows(ch, SNAPSHOT["ingest_stats_per_minute"]) == [
        (T0, NS, "dataset", A, 2, 300),
        (T0 + timedelta(minutes=1), NS, "dataset", A, 1, 300),
        (T0 + timedelta(minutes=1), NS, "model", B, 1, 50)]
    assert await loaded.checkpoint(1) == 7
    assert await loaded.checkpoint(0) == 4
    assert await loaded.checkpoint(2) == 0


async def test_redelivery_changes_nothing(loaded: AnalyticsProjection) -> None:
    ch = loaded.clickhouse
    before, counts = await snapshot(ch), await raw_counts(ch)
    await apply_all(loaded, EVENTS)  # the same batches again
    await loaded.apply(1, A_EVENTS[1:4])  # an overlapping batch
    await loaded.apply(1, A_EVENTS[3:])
    assert await rows(ch, "SELECT count() - uniqExact(event_id) FROM events") == [(0,)]
    assert await raw_counts(ch) == counts
    assert await snapshot(ch) == before


class FailingEventsInsert(ClickHouse):
    """The same engine, with the process dying just before the `events` insert."""

    async def insert(self, table: str, rows: Sequence[Sequence[Any]],
                     column_names: Sequence[str], settings: Any = None) -> None:
        if table == "events":
            raise ConnectionError("crashed before inserting events")
        await super().insert(table, rows, column_names, settings)


async def test_crash_before_events_insert_is_repaired_by_redelivery(
    projection: AnalyticsProjection, chdb_path: Path
) -> None:
    ch = projection.clickhouse
    crashing = FailingEventsInsert(f"chdb://{chdb_path}", database=ch.database)
    try:
        with pytest.raises(ConnectionError):
            await AnalyticsProjection(crashing, SETTINGS).apply(1, A_EVENTS)
    finally:
        await crashing.close()
    assert (await raw_counts(ch))["versions"] > 0  # the derived rows were written...
    assert await projection.checkpoint(1) == 0  # ...but the batch counts as not applied
    await apply_all(projection, EVENTS)  # the redelivery
    assert await snapshot(ch) == await _fresh_snapshot(ch)
    assert (await raw_counts(ch))["events"] == len(EVENTS)


async def test_overlapping_batch_applies_only_new_events(
    projection: AnalyticsProjection,
) -> None:
    await projection.apply(1, A_EVENTS[:3])
    await projection.apply(1, A_EVENTS[1:])  # two applied already, three new
    await projection.apply(0, [EVENTS[3]])
    assert await snapshot(projection.clickhouse) == await _fresh_snapshot(projection.clickhouse)
    assert (await raw_counts(projection.clickhouse))["events"] == len(EVENTS)


async def _fresh_snapshot(ch: ClickHouse) -> dict[str, list[tuple[Any, ...]]]:
    """The snapshot of the known sequence applied once to a database of its own."""
    other = ClickHouse(ch.dsn, database=f"t_{uuid.uuid4().hex[:12]}")
    try:
        fresh = AnalyticsProjection(other, SETTINGS)
        await fresh.setup()
        await apply_all(fresh, EVENTS)
        return await snapshot(other)
    finally:
        await other.command(f"DROP DATABASE IF EXISTS {other.database}")
        await other.close()


async def test_rebuild_gives_identical_tables(loaded: AnalyticsProjection) -> None:
    ch = loaded.clickhouse
    before = await snapshot(ch)
    await loaded.reset()
    assert await raw_counts(ch) == dict.fromkeys(SNAPSHOT, 0)
    assert await loaded.checkpoint(1) == 0
    await apply_all(loaded, EVENTS, replaying=True)
    assert await snapshot(ch) == before
    assert (await loaded.checkpoint(1), await loaded.checkpoint(0)) == (7, 4)


async def test_reset_one_artifact_then_replay_restores_it(loaded: AnalyticsProjection) -> None:
    ch = loaded.clickhouse
    before = await snapshot(ch)
    await loaded.reset({(NS, A)})
    assert await rows(ch, "SELECT DISTINCT name FROM versions FINAL") == [(B,)]
    assert await rows(ch, "SELECT DISTINCT name FROM ingest_stats_per_minute") == [(B,)]
    # The edge A@2 -> B@1 belongs to B, whose ingest made it.
    assert await rows(ch, "SELECT count() FROM lineage_edges") == [(1,)]
    await loaded.apply(1, A_EVENTS, replaying=True)
    await loaded.apply(1, A_EVENTS, replaying=True)  # an interrupted rebuild, run again
    assert await snapshot(ch) == before
    assert await rows(ch, "SELECT count() - uniqExact(event_id) FROM events") == [(0,)]


async def test_events_of_another_partition_are_refused(
    projection: AnalyticsProjection,
) -> None:
    with pytest.raises(ValueError, match="belongs to partition 1"):
        await projection.apply(0, A_EVENTS)


# ------------------------------------------------------------------ read-only SQL


@pytest.fixture(scope="module")
async def shared(chdb_path: Path) -> AsyncIterator[ClickHouse]:
    """The known sequence, projected once; the SQL tests only read it (and check that)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    adapter = ClickHouse(f"chdb://{chdb_path}", database=database)
    try:
        projection = AnalyticsProjection(adapter, SETTINGS)
        await projection.setup()
        await apply_all(projection, EVENTS)
        yield adapter
    finally:
        await adapter.command(f"DROP DATABASE IF EXISTS {database}")
        await adapter.close()


@pytest.fixture(scope="module")
async def sql_adapter(shared: ClickHouse) -> AsyncIterator[ClickHouse]:
    """The SQL service's adapter: its own engine handle and thread, as in production."""
    adapter = ClickHouse(shared.dsn, database=shared.database)
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture(params=["json", "explain"])
def sql(request: pytest.FixtureRequest, sql_adapter: ClickHouse) -> ReadOnlySql:
    """The service with either AST source: parseQueryToJSON, or EXPLAIN AST (what servers
    before 26.x, and DESCRIBE on any version, get)."""
    service = ReadOnlySql(sql_adapter, max_rows=100, max_seconds=1)
    service.use_json_ast = request.param == "json"
    return service


REFUSED: list[tuple[str, type[ArtifactlogError], str]] = [
    ("CREATE TABLE x (a UInt8) ENGINE = Memory", ValidationError, "only read queries"),
    ("DROP TABLE events", ValidationError, "only read queries"),
    ("INSERT INTO events (position) VALUES (99)", ValidationError, "only read queries"),
    ("ALTER TABLE events DELETE WHERE 1", ValidationError, "only read queries"),
    ("TRUNCATE TABLE events", ValidationError, "only read queries"),
    ("SET readonly = 0", ValidationError, "only read queries"),
    ("SELECT 1 SETTINGS readonly = 0", ValidationError, "SETTINGS are not allowed"),
    ("SELECT 1 SETTINGS max_execution_time = 100000", ValidationError, "SETTINGS are not"),
    ("SELECT * FROM file('/etc/passwd')", ValidationError, "table function file()"),
    ("SELECT file('/etc/passwd')", ValidationError, "function file() is not allowed"),
    ("DESCRIBE file('/etc/passwd')", ValidationError, "table function file()"),
    ("INSERT INTO FUNCTION file('x.csv') SELECT 1", ValidationError, "only read queries"),
    ("SELECT * FROM url('http://127.0.0.1:1/x', CSV)", ValidationError, "table function url()"),
    ("SELECT * FROM (SELECT * FROM s3('http://127.0.0.1:1/b/k'))", ValidationError, "s3()"),
    ("CREATE FUNCTION f AS x -> x", ValidationError, "only read queries"),
    ("CREATE NAMED COLLECTION c AS a = 1", ValidationError, "only read queries"),
    ("SYSTEM DROP DNS CACHE", ValidationError, "only read queries"),
    ("INSERT INTO ingest_stats_per_minute (name) VALUES ('x')", ValidationError,
     "only read queries"),
    ("DROP VIEW ingest_stats_per_minute", ValidationError, "only read queries"),
    ("CREATE VIEW v AS SELECT * FROM events", ValidationError, "only read queries"),
    ("SELECT 1; SELECT 2", ValidationError, "only one statement"),
    ("SELECT 1; DROP TABLE events", ValidationError, "only one statement"),
    ("SELECT 1 FORMAT JSON", ValidationError, "FORMAT is not allowed"),
    ("SELECT number FROM numbers(101)", LimitExceeded, "limit"),
    ("SELEC 1", ValidationError, "Syntax error"),
    ("SELECT * FROM nope", ValidationError, "nope"),
]


@pytest.mark.parametrize(("statement", "error", "message"), REFUSED)
async def test_refused_and_nothing_changed(
    sql: ReadOnlySql, shared: ClickHouse, statement: str, error: type[ArtifactlogError],
    message: str,
) -> None:
    before = await fingerprint(shared)
    with pytest.raises(error, match=re.escape(message)) as refused:
        await sql.run(statement)
    assert refused.value.code == error.code
    assert await fingerprint(shared) == before


async def test_sql_never_leaves_its_connection_read_only(loaded: AnalyticsProjection) -> None:
    """clickhouse-connect's chDB client applies some per-call settings with SET + restore on
    the connection, which readonly=1 would make permanent. Sharing the projection's adapter
    (not recommended) must still leave it writable."""
    service = ReadOnlySql(loaded.clickhouse, max_rows=100)
    assert (await service.run("SELECT count() FROM events")).rows == [[7]]
    for statement in ("INSERT INTO events (position) VALUES (99)", "SET readonly = 1",
                      "SELECT number FROM numbers(101)", "SELECT 1 SETTINGS readonly = 1"):
        with pytest.raises(ValidationError):
            await service.run(statement)
    assert await rows(loaded.clickhouse, "SELECT getSetting('readonly')") == [(0,)]
    await loaded.reset({(NS, B)})
    await loaded.apply(0, [EVENTS[3]])
    assert await loaded.checkpoint(0) == 4


async def test_file_writes_write_nothing(sql: ReadOnlySql, tmp_path: Path) -> None:
    """chDB would write both files, even under readonly=1 (INTO OUTFILE) or not (INSERT)."""
    target = tmp_path / "out.csv"
    with pytest.raises(ValidationError, match="INTO OUTFILE"):
        await sql.run(f"SELECT * FROM events INTO OUTFILE '{target}'")
    with pytest.raises(ValidationError, match="only read queries"):
        await sql.run(f"INSERT INTO FUNCTION file('{target}') SELECT * FROM events")
    assert not target.exists()


async def test_row_bomb_stops_within_seconds(sql_adapter: ClickHouse) -> None:
    sql = ReadOnlySql(sql_adapter, max_seconds=0.5)
    started = time.monotonic()
    with pytest.raises((LimitExceeded, Timeout)):
        await sql.run("SELECT count() FROM numbers(1e12)")
    with pytest.raises((LimitExceeded, Timeout)):
        await sql.run("SELECT count() FROM numbers(10000000) AS a, numbers(10000000) AS b")
    assert time.monotonic() - started < 5


async def test_reads_return_columns_types_and_json_rows(sql: ReadOnlySql) -> None:
    result = await sql.run("SELECT position, event_id, recorded_at, toDecimal64(size, 2) AS d"
                           " FROM events ORDER BY position LIMIT 1")
    assert result.columns == ["position", "event_id", "recorded_at", "d"]
    assert result.types == ["UInt64", "UUID", "DateTime64(6, 'UTC')", "Decimal(18, 2)"]
    assert result.rows == [[1, str(EVENTS[0].event_id), "2024-05-01T12:00:00+00:00", 100.0]]
    json.dumps(result.rows)
    with_cte = await sql.run("WITH big AS (SELECT * FROM events WHERE size >= 200)"
                             " SELECT count() AS n FROM big")
    assert with_cte.rows == [[4]]
    tables = await sql.run("SHOW TABLES")
    assert {"events", "versions", "promotions", "lineage_edges",
            "ingest_stats_per_minute"} <= {row[0] for row in tables.rows}
    described = await sql.run("DESCRIBE TABLE events")
    assert described.columns[:2] == ["name", "type"]
    assert described.rows[0][:2] == ["position", "UInt64"]
    assert (await sql.run("SELECT sum(number) FROM numbers(10)")).rows == [[45]]


async def test_example_queries(sql: ReadOnlySql) -> None:
    rate, drafts, to_production = [await sql.run(q) for q in EXAMPLE_QUERIES.values()]
    assert rate.rows == [
        ["2024-05-01T12:00:00+00:00", "dataset", 2, 300],
        ["2024-05-01T12:01:00+00:00", "dataset", 1, 300],
        ["2024-05-01T12:01:00+00:00", "model", 1, 50]]
    assert drafts.rows == [[NS, A, 1, 1], [NS, B, 1, 0]]
    assert to_production.columns == ["namespace", "name", "promoted_versions",
                                     "fastest_seconds", "slowest_seconds", "avg_seconds"]
    assert to_production.rows == [[NS, A, 2, 600, 810, 705.0]]


async def test_the_stats_view_is_read_like_a_table(sql: ReadOnlySql) -> None:
    """The guard reads a view as it reads a table: DESCRIBE, SHOW CREATE and SELECT pass,
    under readonly=1 and the limits."""
    described = await sql.run("DESCRIBE TABLE ingest_stats_per_minute")
    assert [row[:2] for row in described.rows] == [
        ["minute", "DateTime64(0, 'UTC')"], ["namespace", "LowCardinality(String)"],
        ["kind", "LowCardinality(String)"], ["name", "String"], ["ingests", "UInt64"],
        ["bytes", "UInt64"]]
    created = await sql.run("SHOW CREATE TABLE ingest_stats_per_minute")
    assert "FINAL" in created.rows[0][0]
    totals = await sql.run("SELECT name, sum(ingests), sum(bytes) FROM ingest_stats_per_minute"
                           " GROUP BY name ORDER BY name")
    assert totals.rows == [[A, 3, 600], [B, 1, 50]]
