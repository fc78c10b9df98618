"""Versions keep what they repeat once per process (core/artifact.py version_metadata):
folded from separately decoded payloads, or read back from a snapshot, equal labels, types,
producers, metadata keys and short metadata values are one object (long values are not
interned), and metadata equal to the previous version's, in the same key order, is that
version's object."""

from __future__ import annotations

import json
from typing import Any

from core.artifact import ArtifactState, VersionState, fold
from core.events import VersionIngested, to_payload
from core.snapshots import state_from_dict, state_to_dict
from tests.unit.test_snapshots import recorded

LONG = "x" * 200


def ingested(digest: str) -> VersionIngested:
    return VersionIngested(
        number=1, kind="dataset", label="v1", digest=digest, size=10,
        media_type="application/json", content_type="json",
        metadata={"team": "team-3", "notes": LONG}, parents=(), producer="nightly-pipeline")


def decoded_fold(name: str, digest: str) -> ArtifactState:
    # A payload decoded on its own, as each row read from Postgres is.
    payload = json.loads(json.dumps(to_payload(ingested(digest))))
    event = VersionIngested(**{**payload, "parents": ()})
    return fold("ns", name, recorded([event]))


def assert_shared(a: VersionState, b: VersionState) -> None:
    for field in ("label", "media_type", "content_type", "producer"):
        assert getattr(a, field) is getattr(b, field), field
    a_keys, b_keys = list(a.metadata), list(b.metadata)
    assert a_keys == b_keys
    assert all(x is y for x, y in zip(a_keys, b_keys, strict=True))
    assert a.metadata["team"] is b.metadata["team"]
    assert a.metadata["notes"] == b.metadata["notes"]
    assert a.metadata["notes"] is not b.metadata["notes"]  # long values are not interned


def test_versions_of_different_artifacts_share_their_repeated_strings() -> None:
    first = decoded_fold("a", "d" * 64).versions[0]
    second = decoded_fold("b", "e" * 64).versions[0]
    assert first.metadata == {"team": "team-3", "notes": LONG}
    assert_shared(first, second)


def test_a_state_read_back_from_a_snapshot_shares_them_too() -> None:
    state = decoded_fold("a", "d" * 64)
    text: Any = json.loads(json.dumps(state_to_dict(state)))
    restored = state_from_dict(text)
    assert restored == state
    assert_shared(restored.versions[0], decoded_fold("b", "e" * 64).versions[0])


def versions_with(*metadatas: dict[str, Any]) -> list[VersionState]:
    events = [VersionIngested(number=n, kind="dataset", label=f"v{n}", digest=f"{n:064x}",
                              size=1, media_type=None, content_type="json",
                              metadata=json.loads(json.dumps(m)), parents=())
              for n, m in enumerate(metadatas, start=1)]
    return fold("ns", "a", recorded(events)).versions


def test_a_version_whose_metadata_repeats_the_previous_shares_its_object() -> None:
    same = {"team": "t", "rows": [1, 2]}
    reordered = {"rows": [1, 2], "team": "t"}
    first, second, third, fourth = versions_with(same, same, reordered, {"team": "u"})
    assert second.metadata is first.metadata
    assert third.metadata == first.metadata
    assert third.metadata is not first.metadata
    assert list(third.metadata) == ["rows", "team"]  # its own key order is kept
    assert fourth.metadata == {"team": "u"}


def test_a_snapshot_read_back_shares_repeated_metadata_and_keeps_each_order() -> None:
    same = {"team": "t", "rows": [1, 2]}
    events = [VersionIngested(number=n, kind="dataset", label=f"v{n}", digest=f"{n:064x}",
                              size=1, media_type=None, content_type="json", metadata=m,
                              parents=())
              for n, m in enumerate([same, same, {"rows": [1, 2], "team": "t"}], start=1)]
    state = fold("ns", "a", recorded(events))
    restored = state_from_dict(json.loads(json.dumps(state_to_dict(state))))
    assert restored == state
    first, second, third = restored.versions
    assert second.metadata is first.metadata
    assert third.metadata is not first.metadata
    assert [list(v.metadata) for v in restored.versions] == [["team", "rows"]] * 2 + [
        ["rows", "team"]]
