"""The relay: Postgres event log -> JetStream, in position order, nothing skipped or doubled.

It reads ``position > checkpoint`` (gap-free because appends commit in position order, see
``eventlog_pg``), publishes pipelined batches, then records the checkpoint. A crash between
publish and checkpoint only means republishing, which the stream drops as duplicates; on start
the relay also resumes after the stream's own last message, so even a republish after the
duplicate window has passed cannot double an event.

Several relays may run; exactly one is active. Leadership is a session-level Postgres advisory
lock held on a dedicated connection (the same one that LISTENs for appends): when the active
relay dies, its connection closes, Postgres releases the lock with it, and a standby polling
``pg_try_advisory_lock`` takes over within one poll interval. A leader whose connection is
lost stops publishing, since its lock may already be someone else's. Even two publishers
overlapping for a moment could not misorder the stream: each message carries
``Nats-Expected-Last-Sequence``, so the loser's publish is refused and it resumes from the
tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import zlib
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
# A peer that vanishes without closing its socket (a cut cable, a frozen VM) is noticed by TCP
# keepalives within about idle + interval * count seconds, on both sides of the connection.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 1,
              "keepalives_count": 3}
SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 5", "SET tcp_keepalives_interval = 1",
                     "SET tcp_keepalives_count = 3")


def leadership_key(stream_name: str) -> int:
    """The advisory lock key of the relays feeding one stream (a stable positive bigint)."""
    return zlib.crc32(f"artifactlog:relay:{stream_name}".encode()) & 0x7FFFFFFF


class Relay:
    def __init__(
        self, pool: AsyncConnectionPool, publisher: JetStreamPublisher, *,
        batch_size: int = 1000, name: str = "relay", poll_interval: float = 0.5,
        standby_interval: float = 0.1,
    ) -> None:
        self.pool = pool
        self.store = PostgresEventStore(pool)
        self.publisher = publisher
        self.batch_size = batch_size
        self.name = name
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        self.lock_key = leadership_key(publisher.settings.stream_name)
        self.position = 0
        self.published = 0
        self.active = False
        self.active_since: float | None = None  # time.monotonic() when leadership was won
        self._leader: AsyncConnection[Any] | None = None

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
        events = await self.store.read_after(self.position, self.batch_size)
        while events:
            await self._check_leadership()
            # The next batch is read while JetStream stores this one and acks it: the read
            # costs Postgres and this process time that would otherwise wait on the fsyncs.
            reading = asyncio.create_task(
                self.store.read_after(events[-1].position, self.batch_size))
            try:
                await self.publisher.publish(events)
            except BaseException:
                # Not cancelled mid-query (as in projections/rebuild.py): a page read in vain
                # is dropped once it has arrived.
                with contextlib.suppress(Exception):
                    await reading
                raise
            if log.isEnabledFor(logging.DEBUG):  # one line per event: tracing an ingest
                for event in events:
                    log.debug("relay published position=%s", event.position, extra={
                        "position": event.position, "event_id": str(event.event_id),
                        "correlation_id": event.metadata.get("correlationId")})
            self.position = events[-1].position
            await self._write_checkpoint()
            total += len(events)
            self.published += len(events)
            events = await reading
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by until this relay holds the leadership lock, then publish until ``stop`` is
        set, surviving Postgres and NATS outages (and losing leadership with its connection)."""
        backoff = 0.1
        while not stop.is_set():
            try:
                if self._leader is None or self._leader.closed:
                    self._leader = await self._lead(stop)
                    if self._leader is None:
                        break
                    await self.resume()  # another relay may have published meanwhile
                if await self.publish_pending() == 0:
                    await self._wait(self._leader)
                backoff = 0.1
            except RETRYABLE as exc:
                log.warning("relay retrying after error=%r backoff=%.2fs", exc, backoff)
                await self._step_down()  # part of a batch may have landed: resume anew
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)
        await self._step_down()

    async def _lead(self, stop: asyncio.Event) -> AsyncConnection[Any] | None:
        """A connection holding the leadership lock and listening for appends, once this
        relay wins the lock; None if ``stop`` is set first."""
        conn = await AsyncConnection.connect(
            self.pool.conninfo, autocommit=True,
            application_name=f"artifactlog-relay-{os.getpid()}", **KEEPALIVES)
        try:
            for statement in SERVER_KEEPALIVES:
                await conn.execute(statement)
            while not stop.is_set():
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,))
                row = await cur.fetchone()
                if row and row[0]:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.active, self.active_since = True, time.monotonic()
                    log.info("relay pid=%s is now the active relay", os.getpid())
                    return conn
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.standby_interval)
        except BaseException:
            await conn.close()
            raise
        await conn.close()
        return None

    async def _check_leadership(self) -> None:
        """Publish only while the lock's connection lives: if it died, so did the lock."""
        if self._leader is None:
            return  # driven directly (resume/publish_pending), not through run()
        await self._leader.execute("SELECT 1")

    async def _step_down(self) -> None:
        if self._leader is not None:
            with contextlib.suppress(Exception):
                await self._leader.close()  # closing the session releases the lock
            self._leader = None
        if self.active:
            log.info("relay pid=%s stepped down", os.getpid())
        self.active, self.active_since = False, None

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


async def active_relay(pool: AsyncConnectionPool, stream_name: str) -> str | None:
    """The application name (``artifactlog-relay-PID``) of the relay holding the leadership
    lock of ``stream_name``, or None while no relay is active."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0"
            " AND l.objid = %s::bigint::oid AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (leadership_key(stream_name),))
        row = await cur.fetchone()
    return str(row[0]) if row else None
