"""Which partitions of a projection this worker owns.

Ownership is a Postgres advisory lock held on one dedicated session: a worker that dies loses
its locks with its connection, so another takes its partitions over within one rebalance
interval, and two workers can never own the same partition at once. Each worker also holds a
"slot" lock; the live slots say how many workers there are, and worker of rank r among W
wants the partitions p with p % W == r.

A rebuild takes the projection's maintenance lock exclusively; workers take it shared around
each batch, so a rebuild waits for in-flight batches and pauses the rest.
"""

from __future__ import annotations

import zlib
from typing import Any

from psycopg import AsyncConnection

MAX_WORKERS = 256


def lock_key(text: str) -> int:
    """A stable positive int4 key (pg_locks shows the two-key form's keys as oids)."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class PartitionLeases:
    def __init__(self, conninfo: str, projection: str, partitions: int) -> None:
        self.conninfo = conninfo
        self.partitions = partitions
        self.slot_key = lock_key(f"artifactlog:slots:{projection}")
        self.partition_key = lock_key(f"artifactlog:partitions:{projection}")
        self.maintenance_key = lock_key(f"artifactlog:maintenance:{projection}")
        self.slot: int | None = None
        self.conn: AsyncConnection[Any] | None = None

    async def open(self) -> None:
        self.conn = await AsyncConnection.connect(self.conninfo, autocommit=True)
        for slot in range(MAX_WORKERS):
            if await self._try_lock(self.slot_key, slot):
                self.slot = slot
                return
        raise RuntimeError(f"more than {MAX_WORKERS} workers for one projection")

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()  # releases every lock this session held
            self.conn = None

    @property
    def lost(self) -> bool:
        """No live session (the database restarted): every lock it held died with it."""
        return self.conn is None or self.conn.closed

    async def desired(self) -> set[int]:
        """The partitions this worker should own, given the workers alive right now."""
        slots = await self._held(self.slot_key)
        if self.slot not in slots:
            return set()
        rank, workers = slots.index(self.slot), len(slots)
        return {p for p in range(self.partitions) if p % workers == rank}

    async def owners(self) -> list[int]:
        """Partitions owned by any worker."""
        return await self._held(self.partition_key)

    async def try_acquire(self, partition: int) -> bool:
        return await self._try_lock(self.partition_key, partition)

    async def release(self, partition: int) -> None:
        await self._execute("SELECT pg_advisory_unlock(%s, %s)", (self.partition_key, partition))

    async def enter_batch(self) -> bool:
        """False while a rebuild holds the maintenance lock: hold the batch and try later."""
        return await self._scalar(
            "SELECT pg_try_advisory_lock_shared(%s, 0)", (self.maintenance_key,))

    async def leave_batch(self) -> None:
        await self._execute("SELECT pg_advisory_unlock_shared(%s, 0)", (self.maintenance_key,))

    async def _held(self, key: int) -> list[int]:
        assert self.conn is not None
        cur = await self.conn.execute(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s::bigint::oid AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY objid::bigint", (key,))
        return [int(row[0]) for row in await cur.fetchall()]

    async def _try_lock(self, key: int, value: int) -> bool:
        return await self._scalar("SELECT pg_try_advisory_lock(%s, %s)", (key, value))

    async def _scalar(self, query: str, params: tuple[int, ...]) -> bool:
        assert self.conn is not None
        cur = await self.conn.execute(query, params)
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _execute(self, query: str, params: tuple[int, ...]) -> None:
        assert self.conn is not None
        await self.conn.execute(query, params)
