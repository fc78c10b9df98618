"""The webhook dispatcher: follows the event log from each webhook's checkpoint, records the
deliveries it owes, and sends them in log order, retrying with exponential backoff.

Order and loss. A webhook's deliveries go out one at a time, oldest first: a receiver that is
down holds its own queue back (and nobody else's), and once it answers 2xx again everything
arrives in order. Each delivery keeps its id across retries (``Artifactlog-Delivery``), so a
receiver that saw a request whose answer we lost can drop the repeat. After ``max_attempts``
failures a delivery is marked FAILED and the queue moves on; the delivery log keeps it.

One dispatcher at a time: each holds a Postgres advisory lock while it works, so extra
workers (``artifactlog run webhooks`` beside ``artifactlog up``) wait as standbys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from core.artifact import ArtifactState, fold
from core.events import RecordedEvent
from core.ports import EventStore
from core.webhooks import Webhook, backoff_seconds, delivery_body, delivery_id, signed_headers
from core.webhooks_pg import Attempt, Delivery, NewDelivery, WebhookStore

log = logging.getLogger("artifactlog.webhooks")

DISPATCH_LOCK_KEY = 0x7765626B  # "webk"
READ_BATCH = 200
MAX_ERROR_LENGTH = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookDispatcher:
    def __init__(self, pool: AsyncConnectionPool, events: EventStore, *,
                 clock: Callable[[], datetime] = utc_now, timeout_seconds: float = 10.0,
                 backoff_base_seconds: float = 1.0, backoff_cap_seconds: float = 900.0,
                 max_attempts: int = 20, poll_seconds: float = 0.5) -> None:
        self.pool = pool
        self.store = WebhookStore(pool)
        self.events = events
        self.clock = clock
        self.timeout_seconds = timeout_seconds
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_cap_seconds = backoff_cap_seconds
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set (as a standby while another dispatcher holds the
        lock); a lost database connection is reopened."""
        async with httpx.AsyncClient(timeout=self.timeout_seconds,
                                     follow_redirects=False) as http:
            while not stop.is_set():
                try:
                    await self._contend(http, stop)
                except psycopg.OperationalError as exc:
                    log.warning("webhook dispatcher lost the database: %r; reconnecting", exc)
                await self._pause(stop)

    async def _contend(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        # The lock lives on a connection of its own (a session lock; the pool's connections
        # come and go), and dies with it: the leader checks it before each round.
        async with await psycopg.AsyncConnection.connect(self.pool.conninfo,
                                                         autocommit=True) as lock_conn:
            while not stop.is_set():
                cur = await lock_conn.execute("SELECT pg_try_advisory_lock(%s)",
                                              (DISPATCH_LOCK_KEY,))
                row = await cur.fetchone()
                if row and row[0]:
                    await self._lead(lock_conn, http, stop)
                    await lock_conn.execute("SELECT pg_advisory_unlock(%s)",
                                            (DISPATCH_LOCK_KEY,))
                await self._pause(stop)

    async def _lead(self, lock_conn: psycopg.AsyncConnection[Any], http: httpx.AsyncClient,
                    stop: asyncio.Event) -> None:
        while not stop.is_set():
            await lock_conn.execute("SELECT 1")  # still holding the lock? (raises if not)
            try:
                await self.tick(http)
            except Exception:
                log.exception("webhook dispatch failed; retrying")
            await self._pause(stop)

    async def _pause(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.poll_seconds)

    async def tick(self, http: httpx.AsyncClient) -> int:
        """Enqueue new deliveries and send what is due; returns how many were delivered.
        Webhooks proceed side by side, so a slow receiver holds back only its own queue."""
        sent = await asyncio.gather(*(self._serve(w, http) for w in await self.store.signing()))
        return sum(sent)

    async def _serve(self, webhook: Webhook, http: httpx.AsyncClient) -> int:
        await self.enqueue(webhook)
        return await self.send_due(webhook, http)

    async def enqueue(self, webhook: Webhook) -> None:
        """Deliveries for the matching events after the checkpoint, up to the log head."""
        checkpoint = webhook.checkpoint
        while True:
            batch = await self.events.read_after(checkpoint, READ_BATCH)
            if not batch:
                return
            owed = await self._deliveries(webhook, batch)
            await self.store.enqueue(webhook.id, owed, batch[-1].position, self.clock())
            checkpoint = batch[-1].position

    async def _deliveries(self, webhook: Webhook, batch: list[RecordedEvent]
                          ) -> list[NewDelivery]:
        """The batch's deliveries. An artifact is loaded once per batch (up to its first
        matching event) and then folded forward with every event of it the batch holds,
        matching or not, so a busy artifact costs one load, not one per event."""
        states: dict[tuple[str, str], ArtifactState] = {}
        owed = []
        for recorded in batch:
            key = (recorded.namespace, recorded.name)
            matches = webhook.matches(recorded)
            if key not in states:
                if not matches:
                    continue
                stream = await self.events.load_stream(*key, to_position=recorded.position - 1)
                states[key] = fold(*key, stream)
            before = states[key].copy() if matches else None
            after = states[key].apply(recorded)
            if before is not None:
                ident = delivery_id(webhook.id, recorded.event_id)
                owed.append(NewDelivery(ident, recorded.position, recorded.event_id,
                                        recorded.type, recorded.namespace, recorded.name,
                                        delivery_body(ident, webhook, recorded, before, after)))
        return owed

    async def send_due(self, webhook: Webhook, http: httpx.AsyncClient) -> int:
        """Send the webhook's pending deliveries in order until one fails or is not due."""
        sent = 0
        while pending := await self.store.oldest_pending(webhook.id, READ_BATCH):
            for delivery, body in pending:
                if (delivery.next_attempt_at > self.clock()
                        or not await self._attempt(webhook, delivery, body, http)):
                    return sent
                sent += 1
        return sent

    async def _attempt(self, webhook: Webhook, delivery: Delivery, body: bytes,
                       http: httpx.AsyncClient) -> bool:
        now = self.clock()
        headers = signed_headers(webhook.secret, delivery.id, delivery.event_type,
                                 int(now.timestamp()), body)
        started = time.perf_counter()
        status_code, error = None, None
        try:
            response = await http.post(webhook.url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
        attempt = Attempt(delivery.id, delivery.attempts + 1, now, status_code, error,
                          (time.perf_counter() - started) * 1000)
        status, due = "DELIVERED", now
        if error is not None:
            status = "FAILED" if attempt.attempt >= self.max_attempts else "PENDING"
            due = now + timedelta(seconds=backoff_seconds(
                attempt.attempt, base=self.backoff_base_seconds, cap=self.backoff_cap_seconds))
            log.warning("webhook %s delivery %s (position %s) attempt %s failed: %s",
                        webhook.id, delivery.id, delivery.position, attempt.attempt, error)
        await self.store.record_attempt(delivery, attempt, status=status, next_attempt_at=due)
        return error is None
