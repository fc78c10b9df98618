"""Content bytes in the Postgres ``content`` table: the default content store.

Unlike an object store it can join the event transaction, so an ingest's bytes and its event
commit together (``write``); ``put_many`` is the same write in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from core.content import Content


class PostgresContentStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def put_many(self, contents: Sequence[Content]) -> None:
        """Store every content not yet stored, in a transaction of its own."""
        async with self.pool.connection() as conn, conn.transaction():
            await self.write(conn, contents)

    async def write(self, conn: AsyncConnection[Any], contents: Sequence[Content]) -> None:
        """Store ``contents`` inside the caller's open transaction (the caller commits)."""
        # Sorted by digest so that two batches sharing contents lock them in the same order
        # and cannot deadlock.
        unique = sorted({c.digest: c for c in contents}.items())
        if unique:
            # Binary parameters (%b): in text format psycopg escapes every content into a
            # bytea[] literal (hex, then array quoting by regex), which showed in bulk ingest
            # profiles; binary arrays carry the bytes as they are.
            await conn.execute(
                "INSERT INTO content (digest, size, media_type, data) SELECT d, s, m, b FROM"
                " unnest(%b::text[], %b::bigint[], %b::text[], %b::bytea[])"
                " WITH ORDINALITY AS u(d, s, m, b, i) ORDER BY i ON CONFLICT (digest) DO NOTHING",
                ([d for d, _ in unique], [c.size for _, c in unique],
                 [c.media_type for _, c in unique], [c.data for _, c in unique]))

    async def get(self, digest: str) -> bytes | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT data FROM content WHERE digest = %s", (digest,))
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    async def exists(self, digest: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM content WHERE digest = %s", (digest,))
            return await cur.fetchone() is not None

    async def delete(self, digest: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM content WHERE digest = %s", (digest,))
            return cur.rowcount > 0
