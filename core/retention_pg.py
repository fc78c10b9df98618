"""Postgres side of retention: the policies per namespace, and which content digests some
unpurged version still uses (read from the event log, the system of record)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.events import VersionKey


@dataclass(frozen=True)
class RetentionPolicy:
    namespace: str
    draft_days: int
    updated_at: datetime
    updated_by: str


class RetentionStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def set_policy(self, namespace: str, draft_days: int, actor: str) -> RetentionPolicy:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO retention_policies (namespace, draft_days, updated_by)"
                " VALUES (%s, %s, %s) ON CONFLICT (namespace) DO UPDATE SET draft_days ="
                " excluded.draft_days, updated_by = excluded.updated_by, updated_at = now()"
                " RETURNING namespace, draft_days, updated_at, updated_by",
                (namespace, draft_days, actor))
            row = await cur.fetchone()
        assert row is not None
        return RetentionPolicy(**row)

    async def remove_policy(self, namespace: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM retention_policies WHERE namespace = %s",
                                     (namespace,))
            return cur.rowcount > 0

    async def policies(self, namespace: str | None = None) -> list[RetentionPolicy]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT namespace, draft_days, updated_at, updated_by FROM retention_policies"
                " WHERE %s::text IS NULL OR namespace = %s ORDER BY namespace",
                (namespace, namespace))
            return [RetentionPolicy(**row) for row in await cur.fetchall()]

    async def artifact_names(self, namespace: str) -> list[str]:
        """Every artifact of the namespace, archived ones included ('__' streams are not
        artifacts: no artifact name may start with '_')."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT name FROM events WHERE namespace = %s AND name !~ '^_'"
                " ORDER BY name", (namespace,))
            return [row[0] for row in await cur.fetchall()]

    async def digests_in_use(self, digests: Collection[str], *,
                             purging: Collection[VersionKey] = ()) -> set[str]:
        """Those of ``digests`` that some version not purged (nor in ``purging``) still
        points at, in any namespace: content is shared by digest, so its bytes stay while
        one user remains. One pass over the log, whatever the number of digests."""
        if not digests:
            return set()
        keys = sorted(purging, key=lambda k: (k.namespace, k.name, k.number))
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT i.payload->>'digest' FROM events i"
                " WHERE i.type = 'VersionIngested' AND i.payload->>'digest' = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM events p WHERE p.type = 'ContentPurged'"
                " AND p.namespace = i.namespace AND p.name = i.name"
                " AND p.payload->>'number' = i.payload->>'number')"
                " AND (i.namespace, i.name, (i.payload->>'number')::int) NOT IN (SELECT * FROM"
                " unnest(%s::text[], %s::text[], %s::int[]))",
                (sorted(digests), [k.namespace for k in keys], [k.name for k in keys],
                 [k.number for k in keys]))
            return {row[0] for row in await cur.fetchall()}
