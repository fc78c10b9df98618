"""Given events, when a command, then events (or a refusal): the pure domain, no engines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from core.artifact import (
    ArtifactState,
    Stage,
    decide_ingest,
    decide_promote,
    decide_withdraw,
    fold,
    validate_ingest,
)
from core.commands import IngestVersion, VersionRef
from core.content import encode_content
from core.errors import Conflict, LimitExceeded, NotFound, StageRuleViolation, ValidationError
from core.events import (
    DomainEvent,
    RecordedEvent,
    VersionIngested,
    VersionPromoted,
    VersionWithdrawn,
    from_payload,
    to_payload,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ingested(number: int, digest: str | None = None) -> VersionIngested:
    return VersionIngested(number=number, kind="dataset", label=f"v{number}",
                           digest=digest or f"d{number}", size=1, media_type=None,
                           content_type="json")


def given(*events: DomainEvent) -> ArtifactState:
    recorded = [
        RecordedEvent(position=i, event_id=uuid.uuid4(), namespace="ns", name="a",
                      stream_version=i, type=e.type_name, payload=to_payload(e), metadata={},
                      recorded_at=NOW)
        for i, e in enumerate(events, start=1)
    ]
    return fold("ns", "a", recorded)


def ref(number: int | None = None) -> VersionRef:
    return VersionRef("ns", "a", number)


def content(value: object) -> object:
    return encode_content(content=value, max_bytes=1024)


def test_first_ingest_is_version_1_draft() -> None:
    event = decide_ingest(given(), IngestVersion("ns", "a", kind="dataset"),
                          content({"x": 1}), ())
    assert isinstance(event, VersionIngested)
    assert (event.number, event.label, event.kind) == (1, "v1", "dataset")
    assert given(event).versions[0].stage is Stage.DRAFT


def test_versions_are_numbered_without_gaps() -> None:
    state = given(ingested(1), ingested(2), VersionPromoted(2, None), VersionWithdrawn(1))
    event = decide_ingest(state, IngestVersion("ns", "a"), content([1, 2, 3]), ())
    assert isinstance(event, VersionIngested)
    assert event.number == 3


def test_identical_content_returns_the_latest_version_unless_forced() -> None:
    same = content({"x": 1})
    state = given(VersionIngested(number=1, kind="dataset", label="v1", digest=same.digest,
                                  size=same.size, media_type=None, content_type="json"))
    assert decide_ingest(state, IngestVersion("ns", "a"), same, ()) == state.versions[0]
    forced = decide_ingest(state, IngestVersion("ns", "a", force=True), same, ())
    assert isinstance(forced, VersionIngested)
    assert forced.number == 2


def test_expected_version_mismatch_is_a_conflict_naming_the_current_version() -> None:
    state = given(ingested(1), ingested(2))
    with pytest.raises(Conflict, match="at version 2, expected 1") as raised:
        decide_ingest(state, IngestVersion("ns", "a", expected_version=1), content(1), ())
    assert raised.value.details["current_version"] == 2


def test_expected_version_zero_means_a_new_artifact() -> None:
    assert isinstance(decide_ingest(given(), IngestVersion("ns", "a", expected_version=0),
                                    content(1), ()), VersionIngested)
    with pytest.raises(Conflict):
        decide_ingest(given(ingested(1)), IngestVersion("ns", "a", expected_version=0),
                      content(1), ())


def test_kind_cannot_change() -> None:
    with pytest.raises(ValidationError, match="kind 'dataset', not 'model'"):
        decide_ingest(given(ingested(1)), IngestVersion("ns", "a", kind="model"), content(2), ())


def test_promote_draft_makes_it_production() -> None:
    state = given(ingested(1))
    assert decide_promote(state, ref(1), "ok") == VersionPromoted(1, None, "ok")


def test_promote_supersedes_the_previous_production_version() -> None:
    state = given(ingested(1), ingested(2), VersionPromoted(1, None))
    event = decide_promote(state, ref(2), None)
    assert event == VersionPromoted(2, 1, None)
    after = given(ingested(1), ingested(2), VersionPromoted(1, None), event)
    assert [v.stage for v in after.versions] == [Stage.SUPERSEDED, Stage.PRODUCTION]
    assert after.production == 2


def test_superseded_version_can_be_promoted_again_as_rollback() -> None:
    state = given(ingested(1), ingested(2), VersionPromoted(1, None), VersionPromoted(2, 1))
    assert decide_promote(state, ref(1), "rollback") == VersionPromoted(1, 2, "rollback")


def test_promoting_the_production_version_again_decides_nothing() -> None:
    assert decide_promote(given(ingested(1), VersionPromoted(1, None)), ref(1), None) is None


def test_withdrawn_version_cannot_be_promoted() -> None:
    state = given(ingested(1), VersionWithdrawn(1))
    with pytest.raises(StageRuleViolation, match="withdrawn"):
        decide_promote(state, ref(1), None)


def test_withdraw_draft_and_superseded() -> None:
    state = given(ingested(1), ingested(2), VersionPromoted(1, None), VersionPromoted(2, 1))
    assert decide_withdraw(state, ref(1), "bad") == VersionWithdrawn(1, "bad")
    fresh = given(ingested(1))
    assert decide_withdraw(fresh, ref(1), None) == VersionWithdrawn(1, None)


def test_withdrawing_the_production_version_is_refused() -> None:
    state = given(ingested(1), VersionPromoted(1, None))
    with pytest.raises(StageRuleViolation, match="production version"):
        decide_withdraw(state, ref(1), None)


def test_withdrawing_twice_decides_nothing() -> None:
    assert decide_withdraw(given(ingested(1), VersionWithdrawn(1)), ref(1), None) is None


def test_unknown_version_is_not_found() -> None:
    with pytest.raises(NotFound, match="ns/a@7"):
        decide_promote(given(ingested(1)), ref(7), None)


@pytest.mark.parametrize(("namespace", "name"), [
    ("", "a"), ("ns", ""), ("has space", "a"), ("ns", "dots.are.subjects"), ("ns", "x" * 129),
    ("-leading", "a"), ("ns", "star*"), ("ns", "gt>"),
])
def test_invalid_names_are_refused(namespace: str, name: str) -> None:
    with pytest.raises(ValidationError):
        validate_ingest(IngestVersion(namespace, name))


def test_content_must_be_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        encode_content(content={"a": 1}, text="x", max_bytes=100)
    with pytest.raises(ValidationError, match="got none"):
        encode_content(max_bytes=100)


def test_content_limits_and_encodings() -> None:
    with pytest.raises(LimitExceeded):
        encode_content(text="x" * 101, max_bytes=100)
    with pytest.raises(ValidationError, match="base64"):
        encode_content(content_base64="not base64!", max_bytes=100)
    with pytest.raises(ValidationError, match="JSON"):
        encode_content(content={"x": float("nan")}, max_bytes=100)


def test_json_content_digest_ignores_key_order() -> None:
    assert content({"a": 1, "b": 2}).digest == content({"b": 2, "a": 1}).digest  # type: ignore[attr-defined]


def test_payload_round_trip() -> None:
    event = ingested(3)
    assert from_payload(event.type_name, to_payload(event)) == event
