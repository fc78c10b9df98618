"""Versions keep the strings they repeat once per process (core/artifact.py shared_metadata):
folded from separately decoded payloads, or read back from a snapshot, equal labels, types,
producers, metadata keys and short metadata values are one object, and long values are not
interned."""

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
