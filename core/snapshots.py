"""Snapshots of a folded artifact: the state as plain JSON-able data and back, and the rule
for where snapshots are taken. No I/O happens here (core/snapshots_pg.py stores them).

A snapshot is derived data: ``state_from_dict(state_to_dict(s)) == s`` for every state a fold
produces, so folding the events after a snapshot onto it gives exactly the state a fold of
the whole prefix gives. Versions are stored as rows (lists), not objects: 5,000 versions take
1.0 MB instead of 1.7 MB and parse in 4.7 ms instead of 10 ms, and reading a snapshot back is
the part of a time-travel read that grows with the history.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from sys import intern
from typing import Any

from core.artifact import ArtifactState, Stage, VersionState, shared, version_metadata
from core.events import RecordedEvent, VersionKey, VersionPromoted
from core.version_schemes import VersionScheme

# Bumped whenever the layout below changes; readers ignore snapshots of another format (they
# are rebuilt from the log), so old and new code never misread each other's rows.
FORMAT = 1
# A fold that passes this many events beyond its starting snapshot leaves a new snapshot at a
# multiple of it, so a time-travel read folds fewer than this many events on top of one (read
# and folded at ~25-35 us per event: 250 on average, ~7 ms). The trade is storage: a snapshot
# holds the whole state, so an artifact's snapshots grow with versions^2 / INTERVAL (10,000
# versions: 20 snapshots, ~9 MB compressed). Measured on 10,000 versions, random positions,
# warm: 250 -> p50 15.7 ms (twice the snapshots outgrew the cache), 500 -> 6.6 ms, 1000 -> 12.4.
INTERVAL = 500

_STAGES = {stage.value: stage for stage in Stage}


@dataclass(frozen=True)
class Snapshot:
    """A folded prefix of an artifact's stream (events 1..state.stream_version).

    ``high_position`` and ``high_recorded_at`` are the largest position and recorded_at among
    those events, not those of the last one: a snapshot may stand in for the prefix of a read
    bounded by a position or a time only when every event of the prefix is within the bound
    (recorded_at is the insert's clock reading, which is not guaranteed to grow with the
    stream)."""

    state: ArtifactState
    high_position: int
    high_recorded_at: datetime


def state_to_dict(state: ArtifactState) -> dict[str, Any]:
    """The state as JSON-able data (the inverse of ``state_from_dict``)."""
    return {
        "format": FORMAT,
        "namespace": state.namespace,
        "name": state.name,
        "kind": state.kind,
        "stream_version": state.stream_version,
        "position": state.position,
        "production": state.production,
        "scheme": state.scheme.to_json(),
        "rules": [dict(rule) for rule in state.rules],
        "requests": [[n, digest, actor] for n, (digest, actor) in state.requests.items()],
        "approvals": [[n, digest, actor] for n, (digest, actor) in state.approvals.items()],
        "archived": state.archived,
        "promotions": [recorded.to_json() for recorded, _ in state.promotions],
        # namespace and name of every version are the artifact's (the fold sets them so)
        "versions": [[v.number, v.label, v.stage.value, v.digest, v.size, v.media_type,
                      v.content_type, dict(v.metadata),
                      [[p.namespace, p.name, p.number] for p in v.parents],
                      v.producer, v.created_at.isoformat(), v.position, v.purged]
                     for v in state.versions],
    }


def state_from_dict(data: dict[str, Any]) -> ArtifactState:
    """The state ``state_to_dict`` wrote; ValueError for another format."""
    if data.get("format") != FORMAT:
        raise ValueError(f"snapshot format {data.get('format')!r} is not {FORMAT}")
    namespace, name = data["namespace"], data["name"]
    promotions = []
    for item in data["promotions"]:
        recorded = RecordedEvent.from_json(item)
        promoted = recorded.event
        if not isinstance(promoted, VersionPromoted):
            raise ValueError(f"snapshot promotion at {recorded.position} is a {recorded.type}")
        promotions.append((recorded, promoted))
    return ArtifactState(
        namespace=namespace, name=name, kind=data["kind"],
        stream_version=data["stream_version"], position=data["position"],
        versions=_versions(namespace, name, data["versions"]),
        production=data["production"],
        promotions=promotions,
        scheme=VersionScheme.from_json(data["scheme"]),
        rules=tuple(data["rules"]),
        requests={n: (digest, actor) for n, digest, actor in data["requests"]},
        approvals={n: (digest, actor) for n, digest, actor in data["approvals"]},
        archived=data["archived"],
    )


def _versions(namespace: str, name: str, rows: list[list[Any]]) -> list[VersionState]:
    # Parents repeat across versions (a pipeline's inputs), so equal keys are built once.
    keys: dict[tuple[str, str, int], VersionKey] = {}
    versions = []
    new, set_attribute, parse_time = object.__new__, object.__setattr__, datetime.fromisoformat
    for (number, label, stage, digest, size, media_type, content_type, metadata, parents,
         producer, created_at, position, purged) in rows:
        parent_keys = []
        for ns, nm, n in parents:
            key = keys.get((ns, nm, n))
            if key is None:
                key = keys[(ns, nm, n)] = VersionKey(ns, nm, n)
            parent_keys.append(key)
        # The frozen dataclass's fields set as one __dict__ rather than through its __init__
        # (an object.__setattr__ per field): the same object at 40% of the cost, and this
        # loop is most of reading a large snapshot. tests/unit/test_snapshots.py checks the
        # result equals what __init__ builds, field by field.
        version = new(VersionState)
        set_attribute(version, "__dict__", {
            "namespace": namespace, "name": name, "number": number, "label": intern(label),
            "stage": _STAGES[stage], "digest": digest, "size": size,
            "media_type": shared(media_type), "content_type": intern(content_type),
            "metadata": version_metadata(versions, metadata), "parents": tuple(parent_keys),
            "producer": shared(producer), "created_at": parse_time(created_at),
            "position": position, "purged": purged})
        versions.append(version)
    return versions


def fold_onto(start: Snapshot | None, state: ArtifactState, events: Iterable[RecordedEvent],
              interval: int = INTERVAL) -> Snapshot | None:
    """Apply ``events`` to ``state`` (the fold of ``start``, or an empty state), and return
    the snapshot to write: the state at the highest multiple of ``interval`` passed beyond
    the start, or None. Only a gap-free prefix may become a snapshot: a read bounded by time
    can skip an event whose clock reading is later than the next one's."""
    base = state.stream_version
    high_position = start.high_position if start else 0
    high_recorded_at = start.high_recorded_at if start else None
    prefix, taken = True, None
    for event in events:
        prefix = prefix and event.stream_version == state.stream_version + 1
        state.apply(event)
        if not prefix:
            continue
        high_position = max(high_position, event.position)
        if high_recorded_at is None or event.recorded_at > high_recorded_at:
            high_recorded_at = event.recorded_at
        if state.stream_version % interval == 0 and state.stream_version > base:
            taken = Snapshot(state.copy(), high_position, high_recorded_at)
    return taken


class SnapshotCache:
    """Snapshot states this process has read or written, least recently used first, bounded
    by the versions they list: reading a 5,000-version snapshot back from Postgres costs
    ~12 ms, more than the rest of a time-travel read, and the same few snapshots serve most
    reads. Handed out as-is: callers fold onto ``state.copy()``.

    Snapshots of one artifact share their VersionState objects (a version only changes by
    being replaced), so its many snapshots take little more memory than the largest; the
    bound counts list entries, and so overstates what the cache holds."""

    def __init__(self, max_versions: int = 100_000) -> None:
        self.max_versions = max_versions
        self._snapshots: OrderedDict[tuple[str, str, int], Snapshot] = OrderedDict()
        self._held = 0

    def versions(self, namespace: str, name: str) -> list[int]:
        """The stream versions of the artifact's snapshots held."""
        return [v for (ns, n, v) in self._snapshots if (ns, n) == (namespace, name)]

    def get(self, namespace: str, name: str, stream_version: int) -> Snapshot | None:
        key = (namespace, name, stream_version)
        found = self._snapshots.get(key)
        if found is not None:
            self._snapshots.move_to_end(key)
        return found

    def put(self, snapshot: Snapshot) -> None:
        """Keep a snapshot the caller no longer changes."""
        state = snapshot.state
        key = (state.namespace, state.name, state.stream_version)
        if key in self._snapshots or len(state.versions) > self.max_versions:
            return
        held = self.versions(state.namespace, state.name)
        if held:
            nearest = min(held, key=lambda v: abs(v - state.stream_version))
            _share(state.versions, self._snapshots[(*key[:2], nearest)].state.versions)
        self._snapshots[key] = snapshot
        self._held += len(state.versions)
        while self._held > self.max_versions:
            _, dropped = self._snapshots.popitem(last=False)
            self._held -= len(dropped.state.versions)


def _share(versions: list[VersionState], other: list[VersionState]) -> None:
    """Replace each version by the other snapshot's same object where they are equal. Two
    folds of one stream create version n from the same event, and only stage and purged
    change after, so the position that created it, stage and purged decide equality."""
    for index, (mine, theirs) in enumerate(zip(versions, other, strict=False)):
        if mine is not theirs and (mine.position, mine.stage, mine.purged) == (
                theirs.position, theirs.stage, theirs.purged):
            versions[index] = theirs
