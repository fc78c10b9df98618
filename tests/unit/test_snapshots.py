"""Snapshots are faithful: a state survives to_dict -> JSON -> from_dict unchanged, folding
onto a snapshot equals folding the whole prefix, and snapshots are taken only at multiples of
the interval, only of gap-free prefixes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.artifact import ArtifactState, VersionState, fold
from core.events import (
    ArtifactArchived,
    ArtifactUnarchived,
    ContentPurged,
    DomainEvent,
    PromotionApproved,
    PromotionPolicySet,
    PromotionRequested,
    RecordedEvent,
    VersionIngested,
    VersionKey,
    VersionPromoted,
    VersionSchemeSet,
    VersionWithdrawn,
    to_payload,
)
from core.snapshots import (
    Snapshot,
    SnapshotCache,
    fold_onto,
    state_from_dict,
    state_to_dict,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)
metadata = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


def scripted_events(count: int) -> list[DomainEvent]:
    """Every kind of event, in an order the domain could produce (a fixed script)."""
    events: list[DomainEvent] = []
    number = 0
    while len(events) < count:
        number += 1
        scheme = {"kind": "semver", "template": None} if number % 7 == 3 else None
        events.append(VersionIngested(
            number=number, kind="dataset", label=f"v{number}", digest=f"sha256:{number % 4}",
            size=number, media_type="application/json" if number % 2 else None,
            content_type="json", metadata={"z": number, "a": [1, {"y": None, "b": "é"}]},
            parents=(VersionKey("ns", "a", number - 1),) if number > 1 else (),
            producer="p" if number % 3 else None, scheme=scheme))
        step = number % 6
        if step == 1 and number > 1:
            events += [PromotionRequested(number - 1, f"sha256:{(number - 1) % 4}", "why"),
                       PromotionApproved(number - 1, f"sha256:{(number - 1) % 4}"),
                       VersionPromoted(number - 1, None, "ok", approved_by="b")]
        elif step == 2:
            events.append(VersionWithdrawn(number, "bad"))
        elif step == 3:
            events += [PromotionPolicySet(({"rule": "min_age", "seconds": number},)),
                       VersionSchemeSet("template", "r{number}") if number % 2
                       else VersionSchemeSet("sequence")]
        elif step == 4:
            events += [ContentPurged(number, f"sha256:{number % 4}", "retention"),
                       PromotionRequested(number, f"sha256:{number % 4}")]
        elif step == 5:
            events.append(ArtifactArchived("old") if number % 2 else ArtifactUnarchived())
        elif step == 0:
            events.append(VersionPromoted(number, number - 2, override=True))
    return events[:count]


def recorded(events: Sequence[DomainEvent], *, start: int = 1,
             actors: Sequence[str | None] = ("alice", None)) -> list[RecordedEvent]:
    return [RecordedEvent(position=10 * i, event_id=uuid.uuid4(), namespace="ns", name="a",
                          stream_version=i, type=e.type_name, payload=to_payload(e),
                          metadata={"actor": actors[i % len(actors)]},
                          recorded_at=(START + timedelta(seconds=i)).astimezone(
                              PLUS_TWO if i % 2 else UTC))
            for i, e in enumerate(events, start=start)]


def round_trip(state: ArtifactState) -> ArtifactState:
    text = json.dumps(state_to_dict(state), separators=(",", ":"), ensure_ascii=False)
    return state_from_dict(json.loads(text))


def assert_same(found: ArtifactState, expected: ArtifactState) -> None:
    assert found == expected
    for got, want in zip(found.versions, expected.versions, strict=True):
        # equal, and built the same way: what __init__ makes of the same fields
        assert got == VersionState(**vars(got))
        assert type(got.stage) is type(want.stage)
        assert got.created_at.isoformat() == want.created_at.isoformat()
        assert json.dumps(got.metadata) == json.dumps(want.metadata)  # key order too
    for (got_r, got_e), (want_r, want_e) in zip(found.promotions, expected.promotions,
                                                strict=True):
        assert (got_r, got_e) == (want_r, want_e)
        assert got_r.recorded_at.isoformat() == want_r.recorded_at.isoformat()


def test_a_state_of_every_kind_of_event_survives_the_round_trip() -> None:
    events = recorded(scripted_events(200))
    for cut in range(len(events) + 1):
        state = fold("ns", "a", events[:cut])
        assert_same(round_trip(state), state)
        assert state_to_dict(round_trip(state)) == state_to_dict(state)


@st.composite
def event_sequences(draw: st.DrawFn) -> list[DomainEvent]:
    events: list[DomainEvent] = []
    count = 0
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["ingest", "ingest", "promote", "withdraw", "request",
                                     "approve", "purge", "scheme", "policy", "archive"]))
        if kind == "ingest" or count == 0:
            count += 1
            events.append(VersionIngested(
                number=count, kind="k", label=draw(st.text(min_size=1, max_size=5)),
                digest=draw(st.sampled_from(["d1", "d2"])), size=count,
                media_type=draw(st.none() | st.just("text/plain")),
                content_type=draw(st.sampled_from(["json", "text", "bytes"])),
                metadata=draw(metadata),
                parents=tuple(VersionKey("ns", draw(st.sampled_from(["a", "b"])), n)
                              for n in draw(st.lists(st.integers(1, 3), max_size=2))),
                producer=draw(st.none() | st.text(max_size=4)),
                scheme=draw(st.none() | st.just({"kind": "calver", "template": None}))))
            continue
        n = draw(st.integers(1, count))
        events.append({
            "promote": VersionPromoted(n, draw(st.none() | st.integers(1, count)),
                                       draw(st.none() | st.text(max_size=4))),
            "withdraw": VersionWithdrawn(n),
            "request": PromotionRequested(n, "d1", "r"),
            "approve": PromotionApproved(n, "d2"),
            "purge": ContentPurged(n, "d1"),
            "scheme": VersionSchemeSet("template", "x{number}"),
            "policy": PromotionPolicySet(tuple(draw(st.lists(metadata, max_size=2)))),
            "archive": ArtifactArchived() if draw(st.booleans()) else ArtifactUnarchived("u"),
        }[kind])
    return events


@settings(max_examples=150, deadline=None)
@given(event_sequences(), st.lists(st.none() | st.text(max_size=3), min_size=1, max_size=3))
def test_any_fold_survives_the_round_trip(events: list[DomainEvent],
                                          actors: list[str | None]) -> None:
    state = fold("ns", "a", recorded(events, actors=actors))
    assert_same(round_trip(state), state)


@settings(max_examples=100, deadline=None)
@given(event_sequences(), st.integers(1, 6), st.data())
def test_folding_onto_a_snapshot_equals_folding_everything(
        events: list[DomainEvent], interval: int, data: st.DataObject) -> None:
    stream = recorded(events)
    cut = data.draw(st.integers(0, len(stream)))
    start = fold("ns", "a", stream[:cut])
    snapshot = Snapshot(round_trip(start), 10 * cut, START + timedelta(seconds=cut))
    state = snapshot.state.copy()
    taken = fold_onto(snapshot, state, stream[cut:], interval)
    assert_same(state, fold("ns", "a", stream))
    last_multiple = len(stream) - len(stream) % interval
    if taken is None:
        assert last_multiple <= cut
    else:  # exactly the fold of its prefix, at the multiple passed last
        assert taken.state.stream_version == last_multiple > cut
        assert_same(taken.state, fold("ns", "a", stream[:taken.state.stream_version]))
        assert taken.high_position == 10 * taken.state.stream_version


def test_snapshots_are_taken_at_multiples_beyond_the_start() -> None:
    stream = recorded(scripted_events(30))
    for start, end, expected in ((0, 9, None), (0, 10, 10), (0, 29, 20), (10, 19, None),
                                 (10, 20, 20)):
        snapshot = Snapshot(fold("ns", "a", stream[:start]), 10 * start, START)
        taken = fold_onto(snapshot, snapshot.state.copy(), stream[start:end], 10)
        assert (taken and taken.state.stream_version) == expected


def test_a_prefix_with_a_gap_is_never_snapshotted() -> None:
    stream = recorded(scripted_events(10))
    without_third = stream[:2] + stream[3:]  # a time bound skipped event 3 (clock went back)
    taken = fold_onto(None, ArtifactState("ns", "a"), without_third, 2)
    assert taken is not None
    assert taken.state.stream_version == 2  # not 4, 6, 8 or 10: those prefixes lack event 3


def test_highs_are_the_largest_of_the_prefix_not_the_last_event() -> None:
    stream = recorded(scripted_events(4))
    late_clock = START + timedelta(days=1)
    stream[1] = RecordedEvent(**{**vars(stream[1]), "recorded_at": late_clock})
    taken = fold_onto(None, ArtifactState("ns", "a"), stream, 4)
    assert taken is not None
    assert (taken.high_position, taken.high_recorded_at) == (40, late_clock)


def test_the_cache_is_bounded_by_the_versions_it_holds() -> None:
    cache = SnapshotCache(max_versions=25)
    stream = recorded(scripted_events(60))
    snapshots = []
    for version in (10, 20, 30):
        state = fold("ns", "a", stream[:version])
        snapshots.append(Snapshot(state, 10 * version, START))
        cache.put(snapshots[-1])
    held = [cache.get("ns", "a", v) for v in cache.versions("ns", "a")]
    assert sum(len(s.state.versions) for s in held if s is not None) <= 25
    assert held[-1] is snapshots[-1]  # the newest stays
    assert cache.versions("ns", "b") == []


def test_another_format_is_refused() -> None:
    data: dict[str, Any] = state_to_dict(fold("ns", "a", recorded(scripted_events(3))))
    data["format"] = 0
    with pytest.raises(ValueError, match="format"):
        state_from_dict(data)


def test_snapshots_of_one_artifact_share_their_unchanged_versions() -> None:
    stream = recorded(scripted_events(60))
    cache = SnapshotCache()
    older, newer = (Snapshot(round_trip(fold("ns", "a", stream[:n])), 10 * n, START)
                    for n in (30, 60))
    cache.put(older)
    cache.put(newer)
    assert_same(newer.state, fold("ns", "a", stream))
    shared = [a is b for a, b in zip(older.state.versions, newer.state.versions, strict=False)]
    changed = [a != b for a, b in zip(older.state.versions, newer.state.versions, strict=False)]
    assert any(shared)
    assert any(changed)
    assert shared == [not c for c in changed]
