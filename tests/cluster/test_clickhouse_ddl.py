"""The ClickHouse cluster DDL, checked by the ClickHouse engine itself: chDB parses every
generated statement (``formatQuery``), and the single-node DDL still creates working tables."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from core.clickhouse import ClickHouse
from core.clickhouse_ddl import ClickHouseLayout
from core.settings import Settings
from projections.analytics import MIGRATIONS, AnalyticsProjection

pytestmark = pytest.mark.anyio

CLUSTER = ClickHouseLayout("artifactlog_cluster")
STATEMENTS = [s for _, _, statements in MIGRATIONS for s in statements]


@pytest.fixture
async def clickhouse(chdb_path: Path) -> AsyncIterator[ClickHouse]:
    database = f"ddl_{uuid.uuid4().hex[:12]}"
    admin = ClickHouse(f"chdb://{chdb_path}")
    await admin.command(f"CREATE DATABASE {database}")
    await admin.close()
    clickhouse = ClickHouse(f"chdb://{chdb_path}", database=database)
    try:
        yield clickhouse
    finally:
        await clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
        await clickhouse.close()


async def parsed(clickhouse: ClickHouse, statement: str) -> str:
    """The statement as ClickHouse's parser formats it (raises if it does not parse)."""
    _, _, rows = await clickhouse.query("SELECT formatQuery({q:String})", {"q": statement})
    return str(rows[0][0])


async def test_every_cluster_statement_parses(clickhouse: ClickHouse) -> None:
    formatted = [await parsed(clickhouse, ddl) for s in STATEMENTS for ddl in CLUSTER.create(s)]
    tables = [re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", s) for s in STATEMENTS]
    names = [m[1] for m in tables if m]
    assert len(names) == 5
    for name in names:
        local = next(f for f in formatted if f"TABLE IF NOT EXISTS {name}_local" in f)
        assert "ON CLUSTER artifactlog_cluster" in local
        assert re.search(r"ENGINE = Replicated(Replacing|Summing)MergeTree\('/clickhouse/tables/"
                         r"\{shard\}/\{database\}/\{table\}', '\{replica\}'", local), local
        distributed = next(f for f in formatted if f"TABLE IF NOT EXISTS {name} ON" in f)
        assert f"AS {name}_local" in distributed
        assert (f"ENGINE = Distributed(artifactlog_cluster, currentDatabase(), {name}_local,"
                " cityHash64(") in distributed


async def test_the_stats_view_replaces_the_summing_table_on_the_cluster(
    clickhouse: ClickHouse,
) -> None:
    """Migration 4 on a cluster: the old materialized view (only ``_local``) and the summing
    table (Distributed + ``_local``) are dropped ON CLUSTER, then the view is created ON
    CLUSTER over the Distributed ``events`` with FINAL."""
    step = next(statements for version, _, statements in MIGRATIONS if version == 4)
    formatted = [await parsed(clickhouse, ddl) for s in step for ddl in CLUSTER.create(s)]
    drops, creates = formatted[:-1], formatted[-1:]
    assert drops == [
        f"DROP TABLE IF EXISTS {name} ON CLUSTER artifactlog_cluster"
        for name in ("ingest_stats_per_minute_mv", "ingest_stats_per_minute_mv_local",
                     "ingest_stats_per_minute", "ingest_stats_per_minute_local")]
    view = creates[0]
    assert view.startswith("CREATE VIEW IF NOT EXISTS ingest_stats_per_minute ON CLUSTER"
                           " artifactlog_cluster\nAS SELECT"), view
    assert re.search(r"FROM events\s+FINAL", view), view  # the Distributed table, not _local
    assert "_local" not in view
    # Why FINAL over the Distributed `events` is right: its rows are sharded by the hash of
    # exactly its sorting key, so every copy of an event sits on one shard (module doc).
    order = re.search(r"ORDER BY (\w+)", STATEMENTS[0])
    assert order
    assert order[1] == "position"
    events = [await parsed(clickhouse, ddl) for ddl in CLUSTER.create(STATEMENTS[0])]
    assert any(f"events_local, cityHash64({order[1]}))" in f for f in events), events


async def test_the_old_materialized_view_still_has_its_cluster_form(
    clickhouse: ClickHouse,
) -> None:
    """Released migration 3 still runs first on a new cluster, so its form must parse."""
    formatted = [await parsed(clickhouse, ddl) for s in STATEMENTS for ddl in CLUSTER.create(s)]
    view = next(f for f in formatted if "MATERIALIZED VIEW" in f)
    assert "ON CLUSTER artifactlog_cluster TO ingest_stats_per_minute_local" in view
    assert "FROM events_local" in view


async def test_the_engine_refuses_a_broken_statement(clickhouse: ClickHouse) -> None:
    """The check can fail: a statement the parser does not accept raises."""
    broken = CLUSTER.create(STATEMENTS[0])[0].replace("ON CLUSTER", "ON CLUSTERS")
    with pytest.raises(DatabaseError):
        await parsed(clickhouse, broken)


async def test_mutations_target_the_local_tables_on_cluster(clickhouse: ClickHouse) -> None:
    truncate = f"TRUNCATE TABLE IF EXISTS {CLUSTER.target('events')}"
    delete = f"ALTER TABLE {CLUSTER.target('versions')} DELETE WHERE namespace = 'x'"
    assert "events_local ON CLUSTER artifactlog_cluster" in await parsed(clickhouse, truncate)
    assert "versions_local ON CLUSTER artifactlog_cluster" in await parsed(clickhouse, delete)
    assert CLUSTER.insert_settings() == {"distributed_foreground_insert": 1}


def test_a_cluster_name_must_be_an_identifier() -> None:
    with pytest.raises(Exception, match="identifier"):
        ClickHouseLayout("prod; DROP TABLE events")


async def test_the_single_node_ddl_is_unchanged_and_works(clickhouse: ClickHouse) -> None:
    single = ClickHouseLayout()
    assert [single.create(s) for s in STATEMENTS] == [[s] for s in STATEMENTS]
    assert single.target("events") == "events"
    projection = AnalyticsProjection(clickhouse, Settings())
    await projection.setup()
    _, _, rows = await clickhouse.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
        " ORDER BY name")
    engines = {str(r[0]): str(r[1]) for r in rows}
    assert engines["events"] == "ReplacingMergeTree"
    assert engines["ingest_stats_per_minute"] == "View"
    assert "ingest_stats_per_minute_mv" not in engines
    assert "Summing" not in " ".join(engines.values())
    assert not any(name.endswith("_local") for name in engines)


def test_the_setting_selects_the_cluster_layout(chdb_path: Path) -> None:
    settings = Settings.from_env({"ARTIFACTLOG_CLICKHOUSE_CLUSTER": "analytics"})
    projection = AnalyticsProjection(ClickHouse(f"chdb://{chdb_path}"), settings)
    assert projection.layout == ClickHouseLayout("analytics")
    assert AnalyticsProjection(ClickHouse(f"chdb://{chdb_path}"), Settings()).layout.cluster is None
