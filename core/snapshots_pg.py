"""Snapshots of folded artifacts in Postgres (table ``artifact_snapshots``, migration 0008)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from core.snapshots import FORMAT, Snapshot, state_to_dict


@dataclass(frozen=True)
class StoredSnapshot:
    """A row of the table; ``state`` is None when the caller said it has that one already."""

    stream_version: int
    high_position: int
    high_recorded_at: datetime
    state: dict[str, Any] | None


class PostgresSnapshots:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def newest(self, namespace: str, name: str, *, to_position: int | None,
                     to_time: datetime | None, have: Collection[int] = ()
                     ) -> StoredSnapshot | None:
        """The newest snapshot whose whole prefix is within the bounds (None: no bound), with
        its state unless its stream version is in ``have``."""
        async with self.pool.connection() as conn:
            # The primary key's range for the artifact, read backwards: a handful of rows.
            cur = await conn.execute(
                "SELECT stream_version, high_position, high_recorded_at,"
                " CASE WHEN stream_version = ANY(%(have)s) THEN NULL ELSE state END"
                " FROM artifact_snapshots WHERE namespace = %(ns)s AND name = %(name)s"
                " AND format = %(format)s"
                " AND (%(pos)s::bigint IS NULL OR high_position <= %(pos)s)"
                " AND (%(at)s::timestamptz IS NULL OR high_recorded_at <= %(at)s)"
                " ORDER BY stream_version DESC LIMIT 1",
                {"ns": namespace, "name": name, "format": FORMAT, "pos": to_position,
                 "at": to_time, "have": list(have)})
            row = await cur.fetchone()
        return StoredSnapshot(*row) if row else None

    async def save(self, snapshot: Snapshot) -> None:
        """Store a snapshot unless that point is stored already (in this format or a newer
        one: a replica still on older code never overwrites what newer code wrote)."""
        state = snapshot.state
        text = json.dumps(state_to_dict(state), separators=(",", ":"), ensure_ascii=False)
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO artifact_snapshots (namespace, name, stream_version, high_position,"
                " high_recorded_at, format, state) VALUES (%s, %s, %s, %s, %s, %s, %s::json)"
                " ON CONFLICT (namespace, name, stream_version) DO UPDATE SET"
                " high_position = excluded.high_position,"
                " high_recorded_at = excluded.high_recorded_at, format = excluded.format,"
                " state = excluded.state, created_at = now()"
                " WHERE artifact_snapshots.format < excluded.format",
                (state.namespace, state.name, state.stream_version, snapshot.high_position,
                 snapshot.high_recorded_at, FORMAT, text))

    async def delete(self, namespace: str, name: str) -> int:
        """Forget an artifact's snapshots (they are rebuilt on demand); how many went."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM artifact_snapshots WHERE namespace = %s AND name = %s",
                (namespace, name))
            return cur.rowcount
