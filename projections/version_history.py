"""The version-history read model in Postgres: artifacts, versions with their stages,
promotions and lineage edges. Checkpoints live in the same database and move in the same
transaction as the rows, so a redelivered batch is a no-op."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncCursor
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.events import (
    ArtifactArchived,
    ArtifactUnarchived,
    ContentPurged,
    RecordedEvent,
    VersionIngested,
    VersionPromoted,
    VersionWithdrawn,
)
from projections.base import Artifact

NAME = "version_history"
TABLES = ("vh_artifacts", "vh_versions", "vh_promotions", "vh_lineage")


class VersionHistoryProjection:
    name = NAME
    min_batch_size = 0  # the configured projection batch size
    linger_seconds = 0.0  # Postgres pays little per transaction: apply what has arrived

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def setup(self) -> None:
        """The tables come from the alembic migrations; nothing to do at run time."""

    async def close(self) -> None:
        """The pool belongs to the caller."""

    async def checkpoint(self, partition: int) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM projection_checkpoints WHERE projection = %s"
                " AND partition = %s", (NAME, partition))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def apply(
        self, partition: int, events: Sequence[RecordedEvent], *, replaying: bool = False
    ) -> None:
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # The row lock (the no-op DO UPDATE takes it, as FOR UPDATE would) serializes two
            # workers that briefly both believe they own the partition (during a rebalance);
            # the second then reads the first's checkpoint. One round trip, not two.
            await cur.execute(
                "INSERT INTO projection_checkpoints AS c (projection, partition, position)"
                " VALUES (%s, %s, 0) ON CONFLICT (projection, partition)"
                " DO UPDATE SET position = c.position RETURNING c.position", (NAME, partition))
            row = await cur.fetchone()
            checkpoint = int(row[0]) if row else 0
            todo = [e for e in events if replaying or e.position > checkpoint]
            if not todo:
                return
            async with conn.pipeline():
                for event in todo:
                    await apply_event(cur, event)
                await cur.execute(
                    "UPDATE projection_checkpoints SET position = greatest(position, %s),"
                    " updated_at = now() WHERE projection = %s AND partition = %s",
                    (todo[-1].position, NAME, partition))

    async def reset(self, artifacts: set[Artifact] | None = None) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            if artifacts is None:
                await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
                await conn.execute("DELETE FROM projection_checkpoints WHERE projection = %s",
                                   (NAME,))
                return
            keys = sorted(artifacts)
            namespaces, names = [k[0] for k in keys], [k[1] for k in keys]
            for table, ns_col, name_col in (
                ("vh_artifacts", "namespace", "name"), ("vh_versions", "namespace", "name"),
                ("vh_promotions", "namespace", "name"),
                ("vh_lineage", "child_namespace", "child_name"),
            ):
                await conn.execute(
                    f"DELETE FROM {table} WHERE ({ns_col}, {name_col}) IN"
                    " (SELECT * FROM unnest(%s::text[], %s::text[]))", (namespaces, names))


# Each event is one statement (plus one per lineage edge): the statements already travel in
# one pipeline per batch, and what the worker paid per event was psycopg's Python work per
# statement. The parts of an event's statement touch different tables (or, for a
# promotion's stage change, each row once), so folding them into data-modifying CTEs, which
# all run to completion on one snapshot, writes what the separate statements wrote.
INGEST = (
    "WITH artifact AS (INSERT INTO vh_artifacts (namespace, name, kind, latest_number,"
    " stream_version, position, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (namespace, name) DO UPDATE SET latest_number = excluded.latest_number,"
    " stream_version = excluded.stream_version, position = excluded.position,"
    " updated_at = excluded.updated_at)"
    " INSERT INTO vh_versions (namespace, name, number, label, stage, digest, size,"
    " media_type, content_type, metadata, producer, created_at, position)"
    " VALUES (%s, %s, %s, %s, 'DRAFT', %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (namespace, name, number) DO NOTHING")
LINEAGE = ("INSERT INTO vh_lineage VALUES (%s, %s, %s, %s, %s, %s, %s)"
           " ON CONFLICT DO NOTHING")
# The version promoted becomes PRODUCTION and whichever was PRODUCTION before SUPERSEDED:
# one UPDATE, as superseding all then promoting one would leave them.
PROMOTE_STAGES = (
    "UPDATE vh_versions SET stage = CASE WHEN number = %s THEN 'PRODUCTION'"
    " ELSE 'SUPERSEDED' END WHERE namespace = %s AND name = %s"
    " AND (number = %s OR stage = 'PRODUCTION')")
PROMOTION = (
    "INSERT INTO vh_promotions (position, namespace, name, number, previous, reason, actor,"
    " at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
SET_STAGE = "UPDATE vh_versions SET stage = %s WHERE namespace = %s AND name = %s AND number = %s"
PURGE = ("UPDATE vh_versions SET purged = true WHERE namespace = %s AND name = %s"
         " AND number = %s")
ARCHIVE = "UPDATE vh_artifacts SET archived = %s WHERE namespace = %s AND name = %s"
# Every event but an ingest ends by moving the artifact's stream version and position.
TOUCH = ("UPDATE vh_artifacts SET stream_version = %s, position = %s, updated_at = %s,"
         " production_number = coalesce(%s, production_number)"
         " WHERE namespace = %s AND name = %s")


async def apply_event(cur: AsyncCursor[Any], event: RecordedEvent) -> None:
    domain = event.event
    key = (event.namespace, event.name)
    if isinstance(domain, VersionIngested):
        await cur.execute(INGEST, (
            *key, domain.kind, domain.number, event.stream_version, event.position,
            event.recorded_at, event.recorded_at,
            *key, domain.number, domain.label, domain.digest, domain.size, domain.media_type,
            domain.content_type, Jsonb(dict(domain.metadata)), domain.producer,
            event.recorded_at, event.position))
        for parent in domain.parents:
            await cur.execute(LINEAGE, (parent.namespace, parent.name, parent.number, *key,
                                        domain.number, event.position))
        return
    parts: list[tuple[str, tuple[Any, ...]]] = []
    if isinstance(domain, VersionPromoted):
        parts.append((PROMOTE_STAGES, (domain.number, *key, domain.number)))
        parts.append((PROMOTION, (event.position, *key, domain.number, domain.previous,
                                  domain.reason, event.metadata.get("actor"),
                                  event.recorded_at)))
    elif isinstance(domain, VersionWithdrawn):
        parts.append((SET_STAGE, ("WITHDRAWN", *key, domain.number)))
    elif isinstance(domain, ContentPurged):  # retention: the bytes are gone, the row stays
        parts.append((PURGE, (*key, domain.number)))
    elif isinstance(domain, ArtifactArchived | ArtifactUnarchived):
        # Same table as TOUCH (one statement may not update a row twice): its own statement.
        await cur.execute(ARCHIVE, (isinstance(domain, ArtifactArchived), *key))
    production = domain.number if isinstance(domain, VersionPromoted) else None
    touch = (event.stream_version, event.position, event.recorded_at, production, *key)
    await cur.execute(
        "".join(f"{'WITH' if i == 0 else ','} change{i} AS ({sql})"
                for i, (sql, _) in enumerate(parts)) + (" " if parts else "") + TOUCH,
        tuple(value for _, params in parts for value in params) + touch)
