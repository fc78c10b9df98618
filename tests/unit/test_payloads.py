"""``to_payload`` is built shallowly for speed; it must still equal what the
``dataclasses.asdict`` version it replaced gave, for every event type, since the payload is
what the log stores and relay, projections and readers parse."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from core.events import (
    EVENT_TYPES,
    ArtifactArchived,
    ArtifactUnarchived,
    ContentPurged,
    DomainEvent,
    PromotionApproved,
    PromotionPolicySet,
    PromotionRequested,
    VersionIngested,
    VersionKey,
    VersionPromoted,
    VersionSchemeSet,
    VersionWithdrawn,
    from_payload,
    to_payload,
)

EVENTS: list[DomainEvent] = [
    VersionIngested(
        number=3, kind="model", label="1.2.0", digest="ab" * 32, size=12,
        media_type="application/json", content_type="json",
        metadata={"team": "ml", "nested": {"a": [1, 2.5, None, True]}, "ünï": "cødé"},
        parents=(VersionKey("ns", "a", 1), VersionKey("other", "b", 7)), producer="ci",
        scheme={"kind": "template", "template": "{yyyy}.{n}"}),
    VersionIngested(number=1, kind="k", label="1", digest="cd" * 32, size=0, media_type=None,
                    content_type="bytes"),
    VersionPromoted(number=2, previous=None),
    VersionPromoted(number=3, previous=2, reason="ok", override=True, approved_by="alice"),
    VersionWithdrawn(number=1, reason="bad"),
    VersionSchemeSet(kind="semver"),
    VersionSchemeSet(kind="template", template="v{n}"),
    PromotionPolicySet(),
    PromotionPolicySet(rules=({"rule": "approvals", "min": 2, "from": ["a", "b"]},
                              {"rule": "schema", "nested": {"x": [{"y": 1}]}})),
    PromotionRequested(number=4, digest="ef" * 32, reason="ship"),
    PromotionApproved(number=4, digest="ef" * 32),
    ContentPurged(number=1, digest="ab" * 32, reason="retention"),
    ArtifactArchived(reason="old"),
    ArtifactUnarchived(),
]


def _asdict_payload(event: DomainEvent) -> dict[str, Any]:
    """The former ``to_payload``, kept here as the reference."""
    payload = dataclasses.asdict(event)
    if isinstance(event, VersionIngested):
        payload["metadata"] = dict(event.metadata)
    return payload


def test_every_event_type_is_covered() -> None:
    assert {type(e) for e in EVENTS} == set(EVENT_TYPES.values())


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_to_payload_equals_the_asdict_payload(event: DomainEvent) -> None:
    payload = to_payload(event)
    assert payload == _asdict_payload(event)
    assert json.dumps(payload, sort_keys=True) == json.dumps(_asdict_payload(event),
                                                             sort_keys=True)
    assert from_payload(event.type_name, payload) == event


def test_payload_does_not_alias_the_events_mappings() -> None:
    event = EVENTS[0]
    assert isinstance(event, VersionIngested)
    payload = to_payload(event)
    payload["metadata"]["team"] = "changed"
    payload["scheme"]["kind"] = "changed"
    assert event.metadata["team"] == "ml"
    assert event.scheme is not None
    assert event.scheme["kind"] == "template"
