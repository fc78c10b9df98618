"""The relay: Postgres event log -> JetStream, in position order, nothing skipped or doubled.

It reads ``position > checkpoint`` (gap-free because appends commit in position order, see
``eventlog_pg``), publishes pipelined batches, then records the checkpoint. A crash between
publish and checkpoint only means republishing, which the stream drops as duplicates; on start
the relay also resumes after the stream's own last message, so even a republish after the
duplicate window has passed cannot double an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from core.eventlog_pg import NOTIFY_CHANNEL, PostgresEventStore
from core.jetstream import JetStreamPublisher

log = logging.getLogger("artifactlog.relay")

RETRYABLE = (NatsError, JetStreamError, psycopg.OperationalError, TimeoutError, OSError)


class Relay:
    def __init__(
        self, pool: AsyncConnectionPool, publisher: JetStreamPublisher, *,
        batch_size: int = 1000, name: str = "relay", poll_interval: float = 0.5,
    ) -> None:
        self.pool = pool
        self.store = PostgresEventStore(pool)
        self.publisher = publisher
        self.batch_size = batch_size
        self.name = name
        self.poll_interval = poll_interval
        self.position = 0
        self.published = 0

    async def resume(self) -> None:
        """Start after the later of our checkpoint and the stream's last message."""
        checkpoint = await self._read_checkpoint()
        tail = await self.publisher.tail()
        self.publisher.last_event_id = tail.event_id if tail else None
        self.position = max(checkpoint, tail.position if tail else 0)
        log.info("relay resuming position=%s checkpoint=%s stream_tail=%s",
                 self.position, checkpoint, tail.position if tail else None)

    async def publish_pending(self) -> int:
        """Publish everything committed after our position; returns how many were published."""
        total = 0
        while events := await self.store.read_after(self.position, self.batch_size):
            await self.publisher.publish(events)
            self.position = events[-1].position
            await self._write_checkpoint()
            total += len(events)
            self.published += len(events)
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set, surviving Postgres and NATS outages."""
        backoff = 0.1
        listener: AsyncConnection[Any] | None = None
        resumed = False
        while not stop.is_set():
            try:
                if not resumed:
                    await self.resume()
                    resumed = True
                if listener is None or listener.closed:
                    listener = await self._listen()
                if await self.publish_pending() == 0:
                    await self._wait(listener)
                backoff = 0.1
            except RETRYABLE as exc:
                log.warning("relay retrying after error=%r backoff=%.2fs", exc, backoff)
                resumed = False  # part of a batch may have landed: re-read the stream tail
                if listener is not None:
                    await listener.close()
                    listener = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)
        if listener is not None:
            await listener.close()

    async def _listen(self) -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(self.pool.conninfo, autocommit=True)
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn

    async def _wait(self, listener: AsyncConnection[Any]) -> None:
        """Sleep until an append notifies us or the poll interval passes (the interval also
        bounds how long a stop request waits)."""
        async for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
            return

    async def _read_checkpoint(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM relay_checkpoints WHERE name = %s", (self.name,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _write_checkpoint(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO relay_checkpoints (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
                " updated_at = now()", (self.name, self.position))
