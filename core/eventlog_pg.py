"""The Postgres event store: the event log and idempotency keys, with content bytes in a
content store (core/ports.py ContentStore).

Content. The Postgres content store joins the event transaction, so bytes and events commit
together. Any other store (an object store) is written before the event transaction opens:
content is addressed by its digest, so bytes written for a transaction that then fails are an
unreferenced orphan that a later ingest of the same content reuses, never a wrong answer.

Ordering strategy. Positions come from a sequence (``events_position_seq``), and sequences hand
out values in *call* order, not *commit* order: a transaction that takes position 10 can commit
after one that took 11, and a reader tailing ``position > checkpoint`` would then move past 10
before it is visible and never see it. We prevent that at the source: every append takes one
transaction-scoped advisory lock just before inserting its events and holds it until commit,
so positions are handed out and made visible in the same order. (The lock is taken inside
``events_before_append``, which also adds partitions when needed: migration 0006.) The lock
covers only the event INSERT and the commit; content and validation work happen before it,
and a batch of events takes it once, not once per event. (pyeventsourcing's recorder takes a
table lock for the same reason.) Postgres releases transaction locks only after the commit is
visible to other sessions, so the next holder's positions are always seen after ours.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.content_store_pg import PostgresContentStore
from core.errors import Conflict, IdempotencyKeyTaken, StreamVersionTaken
from core.events import NewEvent, RecordedEvent, VersionKey, to_payload
from core.ports import AppendBatch, ContentStore, IdempotencyClaim

APPEND_LOCK_KEY = 0x61727466  # "artf": the one advisory lock that orders appends
NOTIFY_CHANNEL = "artifactlog_events"

EVENT_COLUMNS = sql.SQL(
    "position, event_id, namespace, name, stream_version, type, payload, metadata, recorded_at")


class PostgresEventStore:
    def __init__(self, pool: AsyncConnectionPool, contents: ContentStore | None = None) -> None:
        self.pool = pool
        self.contents: ContentStore = PostgresContentStore(pool) if contents is None else contents

    async def append(self, batch: AppendBatch) -> list[RecordedEvent]:
        if batch.contents and not isinstance(self.contents, PostgresContentStore):
            await self.contents.put_many(batch.contents)  # before the transaction: see above
        async with self.pool.connection() as conn, conn.transaction():
            return await self._write(conn, batch, contents_stored=True)

    async def write(self, conn: AsyncConnection[Any], batch: AppendBatch) -> list[RecordedEvent]:
        """Write ``batch`` inside the caller's open transaction (the caller commits)."""
        return await self._write(conn, batch, contents_stored=False)

    async def _write(self, conn: AsyncConnection[Any], batch: AppendBatch, *,
                     contents_stored: bool) -> list[RecordedEvent]:
        try:
            if isinstance(self.contents, PostgresContentStore):
                await self.contents.write(conn, batch.contents)
            elif not contents_stored and batch.contents:
                await self.contents.put_many(batch.contents)
            recorded = await self._insert_events(conn, batch.events)
            await self._insert_claims(conn, batch.claims, recorded)
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict_for(exc) from exc
        if recorded:
            await conn.execute("SELECT pg_notify(%s, %s)",
                               (NOTIFY_CHANNEL, str(recorded[-1].position)))
        return recorded

    async def _insert_events(
        self, conn: AsyncConnection[Any], events: Sequence[NewEvent]
    ) -> list[RecordedEvent]:
        if not events:
            return []
        # Takes the append lock, and creates partitions first if this batch would come near
        # the last one (migration 0006).
        await conn.execute("SELECT events_before_append(%s, %s)", (APPEND_LOCK_KEY, len(events)))
        # The whole batch goes as one JSON document, encoded by one json.dumps call, and is
        # split into rows by Postgres. Seven parallel arrays with a Jsonb per payload and
        # metadata cost most of bulk ingest CPU: psycopg quotes each JSON value into the text
        # form of a jsonb[] array with a regex substitution per double quote. The stored
        # jsonb is the same value either way (psycopg's Jsonb serialises with json.dumps
        # too). The document is json, not jsonb: jsonb caps a value at 256 MB, which an
        # atomic batch of 1000 commands with the largest metadata allowed would pass.
        rows_json = json.dumps([
            {"e": str(e.event_id), "n": e.namespace, "m": e.name, "v": e.stream_version,
             "t": e.type, "p": to_payload(e.event), "d": dict(e.metadata)} for e in events])
        async with conn.cursor(row_factory=dict_row) as cur:
            # event_keys holds what must be unique across partitions (migration 0006): it is
            # written in the same statement, so a duplicate fails the whole append. Positions
            # are drawn in document order (ORDER BY i), so they follow the batch's order.
            await cur.execute(
                sql.SQL(
                    "WITH added AS (INSERT INTO events (event_id, namespace, name,"
                    " stream_version, type, payload, metadata) SELECT e, n, m, v, t, p, d FROM"
                    " ROWS FROM (json_to_recordset(%s::json) AS (e uuid, n text, m text,"
                    " v int, t text, p jsonb, d jsonb)) WITH ORDINALITY AS u(e, n, m, v, t, p,"
                    " d, i) ORDER BY i RETURNING {}), keys AS (INSERT INTO event_keys"
                    " (event_id, namespace, name, stream_version) SELECT event_id, namespace,"
                    " name, stream_version FROM added) SELECT * FROM added"
                ).format(EVENT_COLUMNS), (rows_json,))
            rows = await cur.fetchall()
        return sorted((recorded_event(r) for r in rows), key=lambda r: r.position)

    async def _insert_claims(
        self, conn: AsyncConnection[Any], claims: Sequence[IdempotencyClaim],
        recorded: list[RecordedEvent],
    ) -> None:
        if not claims:
            return
        by_version = {(r.namespace, r.name, r.payload.get("number")): r.position
                      for r in recorded if r.type == "VersionIngested"}
        rows = [(c.key, c.fingerprint, c.namespace, c.name, c.number,
                 c.position if c.position is not None
                 else by_version[(c.namespace, c.name, c.number)], c.created) for c in claims]
        await conn.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, namespace, name, number, position,"
            " created) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::int[], %s::bigint[], %s::bool[])", [list(c) for c in zip(*rows, strict=True)])

    async def load_stream(
        self, namespace: str, name: str, *, to_position: int | None = None,
        to_time: datetime | None = None, after_version: int = 0,
    ) -> list[RecordedEvent]:
        query = sql.SQL("SELECT {} FROM events WHERE namespace = %s AND name = %s").format(
            EVENT_COLUMNS)
        params: list[Any] = [namespace, name]
        if after_version:
            query += sql.SQL(" AND stream_version > %s")
            params.append(after_version)
        if to_position is not None:
            query += sql.SQL(" AND position <= %s")
            params.append(to_position)
        if to_time is not None:
            query += sql.SQL(" AND recorded_at <= %s")
            params.append(to_time)
        return await self._fetch(query + sql.SQL(" ORDER BY stream_version"), params)

    async def last_position(self, namespace: str, name: str, at_most: int) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(position), 0) FROM events WHERE namespace = %s"
                " AND name = %s AND position <= %s", (namespace, name, at_most))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def read_after(self, position: int, limit: int, *,
                         namespaces: Collection[str] | None = None) -> list[RecordedEvent]:
        query = sql.SQL("SELECT {} FROM events WHERE position > %s").format(EVENT_COLUMNS)
        params: list[Any] = [position]
        if namespaces is not None:
            query += sql.SQL(" AND namespace = ANY(%s)")
            params.append(sorted(namespaces))
        return await self._fetch(query + sql.SQL(" ORDER BY position LIMIT %s"),
                                 [*params, limit])

    async def count_after(self, position: int, *,
                          namespaces: Collection[str] | None = None) -> int:
        chosen = None if namespaces is None else sorted(namespaces)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM events WHERE position > %s"
                " AND (%s::text[] IS NULL OR namespace = ANY(%s::text[]))",
                (position, chosen, chosen))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def head_position(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(position), 0) FROM events")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def find_claims(self, keys: Collection[str]) -> dict[str, IdempotencyClaim]:
        if not keys:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key, fingerprint, namespace, name, number, position, created"
                " FROM idempotency_keys WHERE key = ANY(%s)", (list(keys),))
            return {row[0]: IdempotencyClaim(*row) for row in await cur.fetchall()}

    async def find_children(self, parent: VersionKey) -> list[VersionKey]:
        needle = Jsonb({"parents": [dataclasses.asdict(parent)]})
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT namespace, name, (payload->>'number')::int FROM events"
                " WHERE type = 'VersionIngested' AND payload @> %s ORDER BY position", (needle,))
            return [VersionKey(*row) for row in await cur.fetchall()]

    async def get_content(self, digest: str) -> bytes | None:
        return await self.contents.get(digest)

    async def _fetch(self, query: sql.Composable, params: Sequence[Any]) -> list[RecordedEvent]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return [recorded_event(r) for r in await cur.fetchall()]


def recorded_event(row: dict[str, Any]) -> RecordedEvent:
    """A row of EVENT_COLUMNS (read with dict_row) as the event it records."""
    event_id = row["event_id"]
    if not isinstance(event_id, uuid.UUID):  # psycopg gives UUIDs; parsing again costs µs
        event_id = uuid.UUID(str(event_id))
    return RecordedEvent(
        position=row["position"], event_id=event_id,
        namespace=row["namespace"], name=row["name"], stream_version=row["stream_version"],
        type=row["type"], payload=row["payload"], metadata=row["metadata"],
        recorded_at=row["recorded_at"],
    )


def _conflict_for(exc: psycopg.errors.UniqueViolation) -> Conflict:
    constraint = exc.diag.constraint_name or ""
    if constraint == "idempotency_keys_pkey":
        return IdempotencyKeyTaken("a request with this idempotency key committed first")
    if constraint == "event_keys_pkey":  # event ids are unique across every partition
        return Conflict("an event with this event id is already in the log")
    return StreamVersionTaken("another writer appended to this artifact first")
