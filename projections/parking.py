"""Poison events: parked with their error so one bad event cannot stop a partition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class ParkedEvent:
    projection: str
    event_id: str
    position: int
    namespace: str | None
    name: str | None
    partition: int
    error: str
    parked_at: datetime


class ParkingLot:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def park(self, projection: str, partition: int, *, event_id: str, position: int,
                   namespace: str | None, name: str | None, error: str, message: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO projection_parked (projection, event_id, position, namespace, name,"
                " partition, error, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (projection, event_id, position, namespace, name, partition, error[:2000],
                 message[:100_000]))

    async def blocked_artifacts(self, projection: str) -> set[tuple[str, str]]:
        """Artifacts with a parked event: their later events wait behind it (order holds)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT namespace, name FROM projection_parked WHERE projection = %s"
                " AND namespace IS NOT NULL", (projection,))
            return {(row[0], row[1]) for row in await cur.fetchall()}

    async def list(self, projection: str | None = None) -> list[ParkedEvent]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT projection, event_id, position, namespace, name, partition, error,"
                " parked_at FROM projection_parked WHERE %s::text IS NULL OR projection = %s"
                " ORDER BY projection, position", (projection, projection))
            return [ParkedEvent(*row) for row in await cur.fetchall()]
