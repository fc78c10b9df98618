"""Webhooks in Postgres: subscriptions (with the secret that signs), the deliveries each one
owes, and every attempt made. Reads for users never select the secret column."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.webhooks import Webhook

PUBLIC_COLUMNS = ("id, url, event_types, namespaces, description, checkpoint, created_at,"
                  " created_by")
DELIVERY_COLUMNS = ("id, webhook_id, position, event_id, event_type, namespace, name, status,"
                    " attempts, next_attempt_at, last_error, created_at, delivered_at")
STATUSES = ("PENDING", "DELIVERED", "FAILED")


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    webhook_id: uuid.UUID
    position: int
    event_id: uuid.UUID
    event_type: str
    namespace: str
    name: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class Attempt:
    delivery_id: uuid.UUID
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class NewDelivery:
    id: uuid.UUID
    position: int
    event_id: uuid.UUID
    event_type: str
    namespace: str
    name: str
    body: bytes


def _webhook(row: dict[str, Any]) -> Webhook:
    return Webhook(**{**row, "event_types": tuple(row["event_types"]),
                      "namespaces": tuple(row["namespaces"])})


class WebhookStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(self, webhook: Webhook) -> Webhook:
        rows = await self._rows(
            "INSERT INTO webhooks (id, url, secret, event_types, namespaces, description,"
            " checkpoint, created_at, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" RETURNING {PUBLIC_COLUMNS}",
            (webhook.id, webhook.url, webhook.secret, list(webhook.event_types),
             list(webhook.namespaces), webhook.description, webhook.checkpoint,
             webhook.created_at, webhook.created_by))
        return _webhook(rows[0])

    async def delete(self, webhook_id: uuid.UUID) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM webhooks WHERE id = %s", (webhook_id,))
            return cur.rowcount > 0

    async def list(self) -> list[Webhook]:
        """Without secrets: what users see."""
        rows = await self._rows(f"SELECT {PUBLIC_COLUMNS} FROM webhooks ORDER BY created_at,"
                                " id", ())
        return [_webhook(r) for r in rows]

    async def get(self, webhook_id: uuid.UUID) -> Webhook | None:
        rows = await self._rows(f"SELECT {PUBLIC_COLUMNS} FROM webhooks WHERE id = %s",
                                (webhook_id,))
        return _webhook(rows[0]) if rows else None

    async def signing(self) -> list[Webhook]:
        """With secrets: for the dispatcher only."""
        rows = await self._rows(f"SELECT {PUBLIC_COLUMNS}, secret FROM webhooks"
                                " ORDER BY created_at, id", ())
        return [_webhook(r) for r in rows]

    async def enqueue(self, webhook_id: uuid.UUID, deliveries: Sequence[NewDelivery],
                      checkpoint: int, due: datetime) -> None:
        """Record deliveries and move the checkpoint past them, in one transaction; a
        concurrent change of the checkpoint (another dispatcher) makes this a no-op."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE webhooks SET checkpoint = %s WHERE id = %s AND checkpoint < %s",
                (checkpoint, webhook_id, checkpoint))
            if cur.rowcount == 0 or not deliveries:
                return
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO webhook_deliveries (id, webhook_id, position, event_id,"
                    " event_type, namespace, name, body, status, next_attempt_at) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, 'PENDING', %s)"
                    " ON CONFLICT (webhook_id, position) DO NOTHING",
                    [(d.id, webhook_id, d.position, d.event_id, d.event_type, d.namespace,
                      d.name, d.body.decode(), due) for d in deliveries])

    async def oldest_pending(self, webhook_id: uuid.UUID, limit: int
                             ) -> list[tuple[Delivery, bytes]]:
        """The webhook's next pending deliveries in log order, with their bodies."""
        rows = await self._rows(
            f"SELECT {DELIVERY_COLUMNS}, body FROM webhook_deliveries WHERE webhook_id = %s"
            " AND status = 'PENDING' ORDER BY position LIMIT %s", (webhook_id, limit))
        return [(Delivery(**{k: v for k, v in row.items() if k != "body"}),
                 row["body"].encode()) for row in rows]

    async def record_attempt(self, delivery: Delivery, attempt: Attempt, *, status: str,
                             next_attempt_at: datetime) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error,"
                " duration_ms) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (delivery.id, attempt.attempt, attempt.at, attempt.status_code, attempt.error,
                 attempt.duration_ms))
            await conn.execute(
                "UPDATE webhook_deliveries SET attempts = %s, status = %s, last_error = %s,"
                " next_attempt_at = %s, delivered_at = CASE WHEN %s = 'DELIVERED' THEN %s END"
                " WHERE id = %s",
                (attempt.attempt, status, attempt.error, next_attempt_at, status, attempt.at,
                 delivery.id))

    async def deliveries(self, webhook_id: uuid.UUID, *, status: str | None, limit: int
                         ) -> list[Delivery]:
        """Newest first."""
        query = (f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = %s"
                 " AND (%s::text IS NULL OR status = %s) ORDER BY position DESC LIMIT %s")
        rows = await self._rows(query, (webhook_id, status, status, limit))
        return [Delivery(**r) for r in rows]

    async def attempts(self, delivery_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID,
                                                                          list[Attempt]]:
        rows = await self._rows(
            "SELECT delivery_id, attempt, at, status_code, error, duration_ms FROM"
            " webhook_attempts WHERE delivery_id = ANY(%s) ORDER BY delivery_id, attempt",
            (list(delivery_ids),))
        found: dict[uuid.UUID, list[Attempt]] = {d: [] for d in delivery_ids}
        for r in rows:
            found[r["delivery_id"]].append(Attempt(**r))
        return found

    async def _rows(self, query: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.SQL(query), params)  # type: ignore[arg-type]
            return await cur.fetchall()
