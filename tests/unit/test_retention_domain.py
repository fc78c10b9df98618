"""Retention in the pure domain: which versions a purge picks, what purging and archiving
fold into, and the refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.artifact import ArtifactState, decide_archive, decide_promote, decide_purge, fold
from core.commands import VersionRef
from core.errors import NotFound, StageRuleViolation, ValidationError
from core.events import (
    ArtifactArchived,
    ContentPurged,
    DomainEvent,
    RecordedEvent,
    VersionIngested,
    VersionPromoted,
    VersionWithdrawn,
    to_payload,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def recorded(events: list[tuple[DomainEvent, datetime]]) -> list[RecordedEvent]:
    return [RecordedEvent(position=i + 1, event_id=uuid.uuid4(), namespace="ns", name="a",
                          stream_version=i + 1, type=e.type_name, payload=to_payload(e),
                          metadata={"actor": "ana"}, recorded_at=at)
            for i, (e, at) in enumerate(events)]


def ingested(number: int, digest: str) -> VersionIngested:
    return VersionIngested(number=number, kind="dataset", label=f"v{number}", digest=digest,
                           size=3, media_type=None, content_type="json")


def history() -> ArtifactState:
    """v1 promoted then superseded, v2 production, v3 withdrawn draft, v4 draft, v5 draft
    (newer), all ingested on day 0 except v5 on day 20."""
    return fold("ns", "a", recorded([
        (ingested(1, "d1"), T0), (ingested(2, "d2"), T0), (ingested(3, "d3"), T0),
        (ingested(4, "d4"), T0), (VersionPromoted(1, None), T0),
        (VersionPromoted(2, 1), T0), (VersionWithdrawn(3), T0),
        (ingested(5, "d5"), T0 + timedelta(days=20)),
    ]))


def test_purge_picks_old_drafts_never_promoted() -> None:
    state = history()
    events = decide_purge(state, T0 + timedelta(days=30), timedelta(days=30), "why")
    assert [(e.number, e.digest) for e in events] == [(3, "d3"), (4, "d4")]
    assert decide_purge(state, T0 + timedelta(days=29), timedelta(days=30), None) == []


def test_purged_versions_fold_and_are_not_purged_twice() -> None:
    events = [*[(e, T0) for e in (ingested(1, "d1"), ingested(2, "d2"))],
              (ContentPurged(1, "d1", "r"), T0)]
    state = fold("ns", "a", recorded(events))
    assert [v.purged for v in state.versions] == [True, False]
    assert [e.number for e in decide_purge(state, T0 + timedelta(days=9),
                                           timedelta(days=1), None)] == [2]
    with pytest.raises(StageRuleViolation, match="purged"):
        decide_promote(state, VersionRef("ns", "a", 1), None)


def test_negative_days_are_refused() -> None:
    with pytest.raises(ValidationError):
        decide_purge(history(), T0, timedelta(days=-1), None)


def test_archive_and_unarchive_are_idempotent() -> None:
    state = history()
    assert decide_archive(state, False, None) is None
    archived = decide_archive(state, True, "old")
    assert archived == ArtifactArchived("old")
    state.apply(recorded([*[(ingested(i, f"d{i}"), T0) for i in range(1, 9)],
                          (archived, T0)])[-1])
    assert state.archived
    assert decide_archive(state, True, None) is None
    with pytest.raises(NotFound):
        decide_archive(ArtifactState("ns", "missing"), True, None)


def test_analytics_counts_purges_and_archives_as_artifact_events() -> None:
    from projections.analytics import derive, needed_versions

    events = recorded([(ingested(1, "d1"), T0), (ContentPurged(1, "d1", "r"), T0),
                       (ArtifactArchived("old"), T0)])
    assert needed_versions(events) == set()
    rows = derive(events, {}, 0)
    assert [(r[2], r[9]) for r in rows["events"]] == [
        ("VersionIngested", 1), ("ContentPurged", 1), ("ArtifactArchived", 0)]
    assert len(rows["versions"]) == 1  # a purge leaves the version's row as it was
