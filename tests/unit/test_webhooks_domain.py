"""Webhooks in the pure domain: subscription checks, matching, signatures, backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from core.errors import ValidationError
from core.events import RecordedEvent
from core.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Webhook,
    backoff_seconds,
    check_subscription,
    new_secret,
    signed_headers,
    verify_signature,
)


def webhook(**changes: object) -> Webhook:
    base = {"id": uuid.uuid4(), "url": "http://127.0.0.1:9/h", "event_types": (),
            "namespaces": (), "description": None, "checkpoint": 0,
            "created_at": datetime.now(UTC), "created_by": "ana", "secret": "whsec_s3cr3t"}
    return Webhook(**{**base, **changes})  # type: ignore[arg-type]


def event(type_name: str, namespace: str) -> RecordedEvent:
    return RecordedEvent(1, uuid.uuid4(), namespace, "a", 1, type_name, {}, {},
                         datetime.now(UTC))


def test_subscription_checks() -> None:
    assert check_subscription("https://x.example/h", ["VersionPromoted"], ["ml"]) == (
        "https://x.example/h", ("VersionPromoted",), ("ml",))
    for url in ("ftp://x/h", "not a url", "http://", "/relative"):
        with pytest.raises(ValidationError, match="url"):
            check_subscription(url, [], [])
    with pytest.raises(ValidationError, match="unknown event types") as unknown:
        check_subscription("http://x/h", ["VersionPromoted", "Promoted"], [])
    assert unknown.value.details["unknown"] == ["Promoted"]
    with pytest.raises(ValidationError, match="namespace"):
        check_subscription("http://x/h", [], ["bad/ns"])


def test_matching_by_type_and_namespace() -> None:
    chosen = webhook(event_types=("VersionPromoted",), namespaces=("ml",))
    assert chosen.matches(event("VersionPromoted", "ml"))
    assert not chosen.matches(event("VersionIngested", "ml"))
    assert not chosen.matches(event("VersionPromoted", "other"))
    assert webhook().matches(event("ContentPurged", "any"))


def test_signature_round_trip_and_refusals() -> None:
    secret, body, now = new_secret(), b'{"a":1}', 1_800_000_000
    headers = signed_headers(secret, uuid.uuid4(), "VersionPromoted", now, body)
    assert verify_signature(secret, body, headers, now=now + 10)
    assert not verify_signature("whsec_other", body, headers, now=now)
    assert not verify_signature(secret, body + b" ", headers, now=now)
    assert not verify_signature(secret, body, headers, now=now + 301)  # a replay, later
    assert not verify_signature(secret, body, {**headers, TIMESTAMP_HEADER: "x"}, now=now)
    assert not verify_signature(secret, body, {TIMESTAMP_HEADER: str(now)}, now=now)
    assert headers[SIGNATURE_HEADER].startswith("v1=")


def test_secret_never_in_repr() -> None:
    assert "whsec_s3cr3t" not in repr(webhook())


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(n, base=1, cap=10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
