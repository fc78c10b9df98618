"""The folded-state cache hands out copies, never goes back in time, and stays bounded."""

from __future__ import annotations

import uuid

from core.artifact import ArtifactState
from core.events import RecordedEvent, to_payload
from core.state_cache import StateCache
from tests.unit.test_artifact import NOW, given, ingested


def recorded_ingest(number: int) -> RecordedEvent:
    return RecordedEvent(position=number, event_id=uuid.uuid4(), namespace="ns", name="a",
                         stream_version=number, type="VersionIngested",
                         payload=to_payload(ingested(number)), metadata={}, recorded_at=NOW)


def test_copies_are_independent_of_the_cache() -> None:
    cache = StateCache()
    cache.put(given(ingested(1)))
    handed_out = cache.get("ns", "a")
    assert handed_out is not None
    handed_out.apply(recorded_ingest(2))  # e.g. an append that then loses a race
    again = cache.get("ns", "a")
    assert again is not None
    assert again.latest_number == 1


def test_an_older_fold_never_replaces_a_newer_one() -> None:
    cache = StateCache()
    cache.put(given(ingested(1), ingested(2)))
    cache.put(given(ingested(1)))
    found = cache.get("ns", "a")
    assert found is not None
    assert found.latest_number == 2


def test_least_recently_used_artifacts_are_dropped() -> None:
    cache = StateCache(max_artifacts=2)
    for name in ("a", "b", "c"):
        cache.put(ArtifactState("ns", name, stream_version=1))
    assert cache.get("ns", "a") is None
    assert cache.get("ns", "c") is not None
