"""The analytics projection: the event stream as ClickHouse tables for SQL analytics.

    events                   one row per event (the checkpoint lives here, see ``checkpoint``)
    versions                 latest state per version (ReplacingMergeTree: read it with FINAL)
    promotions               one row per promotion
    lineage_edges            parent version -> child version
    ingest_stats_per_minute  ingests and bytes per minute/namespace/kind/name: a plain VIEW
                             over ``events FINAL`` (sum() it, as one would a summing table)

Exactly once in effect without transactions: one worker at a time owns a partition and
inserts its events in position order, so ``max(position)`` of a partition's ``events`` rows is
its checkpoint. ``events`` is inserted last: a crash before it re-applies the whole batch, and
every table is a ReplacingMergeTree keyed by the event or the version, so rows written twice
collapse when read with FINAL. The per-minute stats store nothing of their own: they are
computed from ``events FINAL`` at query time, so they are exactly as right as ``events`` is.
(Until migration 4 they were a SummingMergeTree fed by a materialized view on ``events``,
which counted every inserted block: an insert repeated after a crash, or a worker killed
between the ``events`` insert and the view's, left them off for good - RELIABILITY.md bug A.)
Only standard engines and SQL, so chDB and a server behave the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.artifact import Stage
from core.clickhouse import ClickHouse
from core.clickhouse_ddl import ClickHouseLayout
from core.events import (
    VERSION_EVENTS,
    RecordedEvent,
    VersionIngested,
    VersionKey,
    VersionPromoted,
)
from core.jetstream import partition_of
from core.settings import Settings
from projections.base import Artifact

NAME = "analytics"
DATETIME = "DateTime64(6, 'UTC')"

# Numbered DDL steps, applied once each in order and recorded in schema_migrations. Never
# edit a released step: add one. Each statement is idempotent, so a step that failed midway
# is simply run again.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "events", (f"""
        CREATE TABLE IF NOT EXISTS events (
            position UInt64, event_id UUID, type LowCardinality(String),
            namespace LowCardinality(String), name String, kind LowCardinality(String),
            stream_version UInt64, partition UInt16, stage LowCardinality(String),
            number UInt64, size UInt64, digest String, producer Nullable(String),
            actor Nullable(String), recorded_at {DATETIME},
            projected_at {DATETIME} DEFAULT now64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree ORDER BY position""",)),
    (2, "versions, promotions, lineage_edges", (f"""
        CREATE TABLE IF NOT EXISTS versions (
            namespace LowCardinality(String), name String, number UInt64, label String,
            kind LowCardinality(String), stage LowCardinality(String), digest String,
            size UInt64, media_type Nullable(String), producer Nullable(String),
            metadata String, created_at {DATETIME}, position UInt64
        ) ENGINE = ReplacingMergeTree(position) ORDER BY (namespace, name, number)""", f"""
        CREATE TABLE IF NOT EXISTS promotions (
            namespace LowCardinality(String), name String, number UInt64,
            previous Nullable(UInt64), reason Nullable(String), actor Nullable(String),
            at {DATETIME}, position UInt64
        ) ENGINE = ReplacingMergeTree ORDER BY (namespace, name, position)""", """
        CREATE TABLE IF NOT EXISTS lineage_edges (
            parent_namespace LowCardinality(String), parent_name String, parent_number UInt64,
            child_namespace LowCardinality(String), child_name String, child_number UInt64,
            position UInt64
        ) ENGINE = ReplacingMergeTree(position) ORDER BY
            (child_namespace, child_name, child_number, parent_namespace, parent_name,
             parent_number)""")),
    # `name` is part of the key (queries sum over it) so that resetting one artifact can
    # delete exactly its contribution.
    (3, "ingest_stats_per_minute", ("""
        CREATE TABLE IF NOT EXISTS ingest_stats_per_minute (
            minute DateTime64(0, 'UTC'), namespace LowCardinality(String),
            kind LowCardinality(String), name String, ingests UInt64, bytes UInt64
        ) ENGINE = SummingMergeTree ORDER BY (minute, namespace, kind, name)""", """
        CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_stats_per_minute_mv
        TO ingest_stats_per_minute AS
        SELECT toDateTime64(toStartOfMinute(recorded_at), 0, 'UTC') AS minute, namespace,
               kind, name, count() AS ingests, sum(size) AS bytes
        FROM events WHERE type = 'VersionIngested'
        GROUP BY minute, namespace, kind, name""")),
    # Bug A: the summing table above could not be made crash-safe (see the module doc). The
    # stats become a view over `events FINAL` with the same columns, so queries are unchanged.
    # DROP TABLE, not DROP VIEW: it drops a table and a view alike, so a step interrupted
    # after creating the view still runs again cleanly. The old rows are not migrated: the
    # view recomputes them all from `events`.
    (4, "ingest_stats_per_minute as a view over events FINAL", (
        "DROP TABLE IF EXISTS ingest_stats_per_minute_mv",
        "DROP TABLE IF EXISTS ingest_stats_per_minute", """
        CREATE VIEW IF NOT EXISTS ingest_stats_per_minute AS
        SELECT toDateTime64(toStartOfMinute(recorded_at), 0, 'UTC') AS minute, namespace,
               kind, name, count() AS ingests, sum(size) AS bytes
        FROM events FINAL WHERE type = 'VersionIngested'
        GROUP BY minute, namespace, kind, name""")),
)
# Step -> the later step that drops everything it creates. A superseded step not applied yet
# is recorded without running: a new install never creates the summing table, and a second
# process setting up at the same moment cannot create the old materialized view (into the
# view!) after the first process has applied step 4.
SUPERSEDED_BY = {3: 4}

# Table -> its (namespace, name) columns, in insert order: `events` last (see module doc).
# The tables that hold rows: resets delete from them and a shadow rebuild exchanges them.
# Views are not here: they hold nothing, and the live view reads the live `events` by name.
TABLES: dict[str, tuple[str, str]] = {
    "versions": ("namespace", "name"),
    "promotions": ("namespace", "name"),
    # An edge belongs to the child: it was derived from the child's ingest.
    "lineage_edges": ("child_namespace", "child_name"),
    "events": ("namespace", "name"),
}
# The checkpoint is read back from `events`, so an insert must be visible once it returns
# (no async inserts), and never silently dropped: block deduplication (replicated tables)
# would drop a block identical to one inserted before a reset. Exactly-once is ours to keep.
INSERT_SETTINGS = {"async_insert": 0, "insert_deduplicate": 0}


class AnalyticsProjection:
    name = NAME
    # ClickHouse pays per insert, not per row: 5,000-event batches applied 2-3x faster than
    # 500 in the projections scenario (BENCHMARKS.md); a fetch returns what is there without
    # waiting for a full batch, so freshness does not pay for it.
    min_batch_size = 5000
    # Under a steady stream a fetch returns the few events of the last moment, and each
    # batch costs two queries and up to four inserts whatever its size: collecting for a
    # quarter of a second cuts those calls several-fold (BENCHMARKS.md) and stays well
    # inside the 1 s freshness goal for ClickHouse.
    linger_seconds = 0.25

    def __init__(self, clickhouse: ClickHouse, settings: Settings) -> None:
        self.clickhouse = clickhouse
        self.settings = settings
        self.layout = ClickHouseLayout(settings.clickhouse_cluster)  # one node, or a cluster

    async def setup(self) -> None:
        for ddl in self.layout.create(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, description String,"
            f" applied_at {DATETIME} DEFAULT now64(6, 'UTC'))"
            " ENGINE = ReplacingMergeTree ORDER BY version"):
            await self.clickhouse.command(ddl)
        _, _, rows = await self.clickhouse.query("SELECT version FROM schema_migrations FINAL")
        applied = {int(row[0]) for row in rows}
        for version, description, statements in MIGRATIONS:
            if version in applied:
                continue
            if SUPERSEDED_BY.get(version) in {v for v, _, _ in MIGRATIONS}:
                statements = ()  # recorded, not run: see SUPERSEDED_BY
            for statement in statements:
                for ddl in self.layout.create(statement):
                    await self.clickhouse.command(ddl)
            await self.clickhouse.insert("schema_migrations", [[version, description]],
                                         ["version", "description"])

    async def checkpoint(self, partition: int) -> int:
        _, _, rows = await self.clickhouse.query(
            "SELECT max(position) FROM events WHERE partition = {p:UInt16}", {"p": partition})
        return int(rows[0][0])

    async def apply(
        self, partition: int, events: Sequence[RecordedEvent], *, replaying: bool = False
    ) -> None:
        self._check_partition(partition, events)
        todo = await self._unapplied(partition, events, replaying)
        if not todo:
            return
        known = await self._known_versions(needed_versions(todo))
        rows = derive(todo, known, partition)
        for table in TABLES:  # in insert order, `events` last
            if rows.get(table):
                await self.clickhouse.insert(table, rows[table], COLUMNS[table],
                                             settings={**INSERT_SETTINGS,
                                                       **self.layout.insert_settings()})

    async def reset(self, artifacts: set[Artifact] | None = None) -> None:
        """Delete all rows (None) or the given artifacts' rows.

        TRUNCATE rather than ALTER ... DELETE for everything: it also forgets the insert
        deduplication state. Deleting some artifacts may lower a partition's checkpoint to the
        highest position left; the rebuild that follows replays those artifacts anyway.
        """
        if artifacts is None:
            for table in TABLES:
                await self.clickhouse.command(
                    f"TRUNCATE TABLE IF EXISTS {self.layout.target(table)}")
            return
        if not artifacts:
            return
        keys = sorted(artifacts)
        for table, (ns_col, name_col) in TABLES.items():
            await self.clickhouse.command(
                f"ALTER TABLE {self.layout.target(table)} DELETE WHERE ({ns_col}, {name_col})"
                " IN {keys:Array(Tuple(String, String))}",
                parameters={"keys": keys}, settings={"mutations_sync": 2})

    async def close(self) -> None:
        """Close the adapter: the projection owns it (idempotent, so a caller may too)."""
        await self.clickhouse.close()

    def _check_partition(self, partition: int, events: Sequence[RecordedEvent]) -> None:
        # The events rows carry the partition the checkpoint is read back with; an event
        # filed under another partition would corrupt both partitions' checkpoints.
        for event in events:
            actual = partition_of(event.namespace, event.name, self.settings.partitions)
            if actual != partition:
                raise ValueError(f"event at position {event.position} belongs to partition"
                                 f" {actual}, not {partition}")

    async def _unapplied(
        self, partition: int, events: Sequence[RecordedEvent], replaying: bool
    ) -> list[RecordedEvent]:
        """The events to apply: above the checkpoint; when replaying, those not yet stored.

        Replaying skips stored positions too, so a rebuild that is interrupted and run again
        does not insert an `events` row twice (FINAL would collapse it; this saves the merge).
        """
        if not events:
            return []
        first, last = min(e.position for e in events), max(e.position for e in events)
        _, _, rows = await self.clickhouse.query(
            "SELECT max(position), groupArrayIf(position, position <= {last:UInt64})"
            " FROM events WHERE partition = {p:UInt16} AND position >= {first:UInt64}",
            {"p": partition, "first": first, "last": last})
        checkpoint, stored = int(rows[0][0]), set(rows[0][1])
        if replaying:
            return [e for e in events if e.position not in stored]
        return [e for e in events if e.position > checkpoint]

    async def _known_versions(self, keys: set[Key]) -> dict[Key, VersionAttrs]:
        """Attributes of versions ingested in earlier batches, from ``versions``."""
        if not keys:
            return {}
        _, _, rows = await self.clickhouse.query(
            "SELECT namespace, name, number, label, kind, digest, size, media_type, producer,"
            " metadata, created_at FROM versions FINAL"
            " WHERE (namespace, name, number) IN {keys:Array(Tuple(String, String, UInt64))}",
            {"keys": sorted(keys)})
        return {(r[0], r[1], int(r[2])): VersionAttrs(*r[3:]) for r in rows}


Key = tuple[str, str, int]  # (namespace, name, number)
Row = list[Any]

# The inserted columns. An `events` row of a promotion or withdrawal carries the affected
# version's kind, size, digest and producer too, so every event groups like its version.
COLUMNS: dict[str, tuple[str, ...]] = {
    "versions": ("namespace", "name", "number", "label", "kind", "stage", "digest", "size",
                 "media_type", "producer", "metadata", "created_at", "position"),
    "promotions": ("namespace", "name", "number", "previous", "reason", "actor", "at",
                   "position"),
    "lineage_edges": ("parent_namespace", "parent_name", "parent_number", "child_namespace",
                      "child_name", "child_number", "position"),
    "events": ("position", "event_id", "type", "namespace", "name", "kind", "stream_version",
               "partition", "stage", "number", "size", "digest", "producer", "actor",
               "recorded_at"),
}
STAGE_AFTER = {"VersionIngested": Stage.DRAFT, "VersionPromoted": Stage.PRODUCTION,
               "VersionWithdrawn": Stage.WITHDRAWN}


@dataclass(frozen=True)
class VersionAttrs:
    """What a version keeps for life, set by its ingest; only its stage changes later."""

    label: str
    kind: str
    digest: str
    size: int
    media_type: str | None
    producer: str | None
    metadata: str  # JSON
    created_at: datetime


def needed_versions(events: Sequence[RecordedEvent]) -> set[Key]:
    """Versions whose stage these events change but which they do not ingest themselves."""
    ingested: set[Key] = set()
    needed: set[Key] = set()
    for recorded in events:
        event = recorded.event
        if recorded.type not in VERSION_EVENTS:
            continue  # about the artifact, not a version
        key = (recorded.namespace, recorded.name, event.number)
        if isinstance(event, VersionIngested):
            ingested.add(key)
            continue
        needed.add(key)
        if isinstance(event, VersionPromoted) and event.previous is not None:
            needed.add((recorded.namespace, recorded.name, event.previous))
    return needed - ingested


def derive(
    events: Sequence[RecordedEvent], known: Mapping[Key, VersionAttrs], partition: int
) -> dict[str, list[Row]]:
    """The rows of every table for ``events`` (pure: a rebuild derives identical rows)."""
    attrs = dict(known)
    rows: dict[str, list[Row]] = {table: [] for table in COLUMNS}
    for recorded in events:
        event, ns, name = recorded.event, recorded.namespace, recorded.name
        if recorded.type not in VERSION_EVENTS:  # about the artifact: only the event itself
            rows["events"].append([
                recorded.position, recorded.event_id, recorded.type, ns, name, "",
                recorded.stream_version, partition, "", getattr(event, "number", 0), 0, "",
                None, actor_of(recorded), utc(recorded.recorded_at)])
            continue
        key = (ns, name, event.number)
        if isinstance(event, VersionIngested):
            attrs[key] = ingested_attrs(recorded, event)
            rows["lineage_edges"] += [edge_row(p, key, recorded.position) for p in event.parents]
        if isinstance(event, VersionPromoted):
            rows["promotions"].append([ns, name, event.number, event.previous, event.reason,
                                       actor_of(recorded), utc(recorded.recorded_at),
                                       recorded.position])
            if event.previous is not None:
                previous = (ns, name, event.previous)
                rows["versions"].append(version_row(
                    previous, attrs.get(previous) or unknown(recorded), Stage.SUPERSEDED,
                    recorded.position))
        version, stage = attrs.get(key) or unknown(recorded), STAGE_AFTER[recorded.type]
        rows["versions"].append(version_row(key, version, stage, recorded.position))
        rows["events"].append([
            recorded.position, recorded.event_id, recorded.type, ns, name, version.kind,
            recorded.stream_version, partition, stage.value, event.number, version.size,
            version.digest, version.producer, actor_of(recorded), utc(recorded.recorded_at)])
    return rows


# Stable output, so a rebuild writes identical rows. One encoder for all: json.dumps with
# any option builds a new encoder per call, which was most of the cost of an ingest's row.
_METADATA_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def ingested_attrs(recorded: RecordedEvent, event: VersionIngested) -> VersionAttrs:
    metadata = _METADATA_JSON.encode(dict(event.metadata))
    return VersionAttrs(event.label, event.kind, event.digest, event.size, event.media_type,
                        event.producer, metadata, utc(recorded.recorded_at))


def unknown(recorded: RecordedEvent) -> VersionAttrs:
    # A stage change for a version this projection never saw ingested (its rows were lost
    # or deleted by hand). Blank attributes keep the partition moving; a rebuild repairs it.
    return VersionAttrs("", "", "", 0, None, None, "{}", utc(recorded.recorded_at))


def version_row(key: Key, attrs: VersionAttrs, stage: Stage, position: int) -> Row:
    return [*key, attrs.label, attrs.kind, stage.value, attrs.digest, attrs.size,
            attrs.media_type, attrs.producer, attrs.metadata, attrs.created_at, position]


def edge_row(parent: VersionKey, child: Key, position: int) -> Row:
    return [parent.namespace, parent.name, parent.number, *child, position]


def actor_of(recorded: RecordedEvent) -> str | None:
    actor = recorded.metadata.get("actor")
    return None if actor is None else str(actor)


def utc(moment: datetime) -> datetime:
    """Aware UTC: clickhouse-connect would read a naive datetime in the host's zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
