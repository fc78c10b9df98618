"""Webhooks, the pure part: who subscribes to what, the body of a delivery, its signature,
and the retry schedule. No I/O here (core/webhooks_pg.py stores, core/webhooks_worker.py
sends).

Signing (as Stripe and GitHub do). Every attempt carries

    Artifactlog-Delivery:   the delivery id (the same on every retry: dedupe on it)
    Artifactlog-Event:      the event type, e.g. VersionPromoted
    Artifactlog-Timestamp:  unix seconds when this attempt was signed
    Artifactlog-Signature:  v1=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>

A receiver verifies with ``verify_signature`` (or the same few lines in any language):
recompute the HMAC over the timestamp, a dot and the raw request body, compare in constant
time, and refuse a timestamp older than a few minutes (a replayed request).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from core.artifact import ArtifactState, VersionState, validate_name
from core.errors import ValidationError
from core.events import EVENT_TYPES, RecordedEvent

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DELIVERY_HEADER = "Artifactlog-Delivery"
EVENT_HEADER = "Artifactlog-Event"
TIMESTAMP_HEADER = "Artifactlog-Timestamp"
SIGNATURE_HEADER = "Artifactlog-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
MAX_URL_LENGTH = 2048
# A fixed namespace for delivery ids: uuid5(webhook id + event id) is the same on every
# process, so a delivery re-created after a crash keeps its id.
DELIVERY_NAMESPACE = uuid.UUID("5b0f1c1e-8a7e-4f55-9a53-3d1f7f0b6a11")


@dataclass(frozen=True)
class Webhook:
    id: uuid.UUID
    url: str
    event_types: tuple[str, ...]  # empty: every type
    namespaces: tuple[str, ...]  # empty: every namespace
    description: str | None
    checkpoint: int
    created_at: datetime
    created_by: str
    secret: str = field(repr=False, default="")  # never logged, never returned after creation

    def matches(self, event: RecordedEvent) -> bool:
        return ((not self.event_types or event.type in self.event_types)
                and (not self.namespaces or event.namespace in self.namespaces))


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_subscription(url: str, event_types: Iterable[str], namespaces: Iterable[str]
                       ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The subscription, validated and normalised; ValidationError says what is wrong."""
    parts = urlsplit(url)
    if (len(url) > MAX_URL_LENGTH or parts.scheme not in ("http", "https")
            or not parts.hostname or any(c.isspace() for c in url)):
        raise ValidationError(f"url must be an absolute http(s) URL, got {url[:200]!r}")
    types = tuple(sorted(set(event_types)))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise ValidationError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}",
                              unknown=unknown)
    chosen = tuple(sorted(set(namespaces)))
    for namespace in chosen:
        validate_name("namespace", namespace)
    return url, types, chosen


def delivery_id(webhook_id: uuid.UUID, event_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{webhook_id}:{event_id}")


def version_json(version: VersionState | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"namespace": version.namespace, "name": version.name, "number": version.number,
            "label": version.label, "stage": version.stage.value, "digest": version.digest,
            "size": version.size, "purged": version.purged}


def delivery_body(delivery: uuid.UUID, webhook: Webhook, recorded: RecordedEvent,
                  before: ArtifactState, after: ArtifactState) -> bytes:
    """What the receiver gets: the event, the actor, the version it concerns as it is after
    the event, and what was there before (the previous production version on a promotion,
    the version's previous stage on a withdrawal or purge)."""
    number = recorded.payload.get("number")
    number = number if isinstance(number, int) else None
    production = before.version(before.production) if before.production else None
    body = {
        "id": str(delivery), "webhookId": str(webhook.id), "type": recorded.type,
        "actor": recorded.metadata.get("actor"), "event": recorded.to_json(),
        "version": version_json(after.version(number)) if number else None,
        "previous": {
            "production": version_json(production),
            "version": version_json(before.version(number)) if number else None,
        },
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(secret: str, delivery: uuid.UUID, event_type: str, timestamp: int,
                   body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", DELIVERY_HEADER: str(delivery),
            EVENT_HEADER: event_type, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body),
            "User-Agent": "artifactlog-webhooks/1"}


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str], *, now: float,
                     tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS) -> bool:
    """For receivers: True when the request was signed with ``secret`` within the
    tolerance. ``headers`` may be any case-insensitive mapping (or exact-case dict)."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER])
        given = headers[SIGNATURE_HEADER]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))


def backoff_seconds(attempts: int, *, base: float, cap: float) -> float:
    """Delay before the next try after ``attempts`` failures: base, 2*base, 4*base ... cap."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))
