"""A recorded event decodes its payload once; the decoded event is no part of its value."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, datetime

from core.events import RecordedEvent, VersionWithdrawn


def test_a_recorded_event_decodes_its_payload_once() -> None:
    recorded = RecordedEvent(1, uuid.uuid4(), "ns", "a", 2, "VersionWithdrawn",
                             {"number": 1, "reason": "r"}, {}, datetime.now(UTC))
    twin = RecordedEvent(**{f.name: getattr(recorded, f.name) for f in fields(recorded)})
    assert recorded.event == VersionWithdrawn(1, "r")
    assert recorded.event is recorded.event  # decoded once, then kept
    assert recorded == twin  # the twin has decoded nothing: equality ignores the cache
    assert "_event" not in repr(recorded)
