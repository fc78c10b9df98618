"""Application service for webhooks: subscribe, unsubscribe, list, and the delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from core.errors import NotFound, ValidationError
from core.ports import EventStore
from core.webhooks import Webhook, check_subscription, new_secret
from core.webhooks_pg import STATUSES, Attempt, Delivery, WebhookStore

MAX_DELIVERIES_PAGE = 1000
MAX_DESCRIPTION_LENGTH = 500


def parse_webhook_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError(f"webhook id {text!r} is not a UUID") from None


class WebhookService:
    def __init__(self, store: WebhookStore, events: EventStore) -> None:
        self.store = store
        self.events = events

    async def create(self, url: str, *, event_types: Sequence[str] = (),
                     namespaces: Sequence[str] = (), description: str | None = None,
                     from_position: int | None = None, actor: str | None = None
                     ) -> tuple[Webhook, str]:
        """Subscribe ``url``; returns the webhook and its signing secret (shown this once).
        Deliveries start after ``from_position`` (default: the log head, i.e. from now)."""
        url, types, chosen = check_subscription(url, event_types, namespaces)
        if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
            raise ValidationError(f"description is limited to {MAX_DESCRIPTION_LENGTH} "
                                  "characters")
        if from_position is not None and from_position < 0:
            raise ValidationError("fromPosition must be 0 (the whole log) or a position")
        checkpoint = (await self.events.head_position() if from_position is None
                      else from_position)
        secret = new_secret()
        created = await self.store.create(Webhook(
            id=uuid.uuid4(), url=url, event_types=types, namespaces=chosen,
            description=description, checkpoint=checkpoint, created_at=datetime.now(UTC),
            created_by=actor or "", secret=secret))
        return created, secret

    async def delete(self, webhook_id: str) -> None:
        if not await self.store.delete(parse_webhook_id(webhook_id)):
            raise NotFound(f"webhook {webhook_id} does not exist")

    async def list(self) -> list[Webhook]:
        return await self.store.list()

    async def get(self, webhook_id: str) -> Webhook:
        found = await self.store.get(parse_webhook_id(webhook_id))
        if found is None:
            raise NotFound(f"webhook {webhook_id} does not exist")
        return found

    async def deliveries(self, webhook_id: str, *, status: str | None = None,
                         limit: int = 100) -> list[tuple[Delivery, list[Attempt]]]:
        """The webhook's deliveries, newest first, each with its attempts."""
        webhook = await self.get(webhook_id)
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {list(STATUSES)}, got {status!r}")
        if not 1 <= limit <= MAX_DELIVERIES_PAGE:
            raise ValidationError(f"first must be 1-{MAX_DELIVERIES_PAGE}")
        found = await self.store.deliveries(webhook.id, status=status, limit=limit)
        attempts = await self.store.attempts([d.id for d in found])
        return [(d, attempts[d.id]) for d in found]
