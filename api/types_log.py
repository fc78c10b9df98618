"""GraphQL types over the event log itself: events, replay steps, lineage and diffs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api.context import Info
from api.pagination import decode_cursor, encode_cursor, page_size
from api.types import ArtifactVersion, PageInfo
from core.artifact import ArtifactState
from core.comparison import Comparison
from core.diff import Change as DomainChange
from core.events import RecordedEvent


@strawberry.type
class Event:
    record: strawberry.Private[RecordedEvent]

    @strawberry.field
    def position(self) -> int:
        return self.record.position

    @strawberry.field
    def event_id(self) -> str:
        return str(self.record.event_id)

    @strawberry.field
    def type(self) -> str:
        return self.record.type

    @strawberry.field
    def namespace(self) -> str:
        return self.record.namespace

    @strawberry.field
    def name(self) -> str:
        return self.record.name

    @strawberry.field
    def stream_version(self) -> int:
        return self.record.stream_version

    @strawberry.field
    def recorded_at(self) -> datetime:
        return self.record.recorded_at

    @strawberry.field
    def payload(self, info: Info) -> JSON:
        payload = dict(self.record.payload)
        if "parents" in payload:  # parents in namespaces this token may not read stay hidden
            payload["parents"] = [p for p in payload["parents"]
                                  if info.context.principal is not None
                                  and info.context.principal.can_read(p["namespace"])]
        return payload

    @strawberry.field
    def metadata(self) -> JSON | None:
        return dict(self.record.metadata)


@strawberry.type
class EventEdge:
    node: Event
    cursor: str


@strawberry.type
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class ReplayStep:
    event: Event
    state: JSON


def replay_state(state: ArtifactState) -> dict[str, Any]:
    """The folded artifact after one event, as the replay trace shows it."""
    return {
        "namespace": state.namespace, "name": state.name, "kind": state.kind,
        "streamVersion": state.stream_version, "position": state.position,
        "latest": state.latest_number, "production": state.production,
        "versions": [{"number": v.number, "label": v.label, "stage": v.stage.value,
                      "digest": v.digest, "size": v.size} for v in state.versions],
    }


@strawberry.type
class LineageEdge:
    from_: ArtifactVersion = strawberry.field(name="from")
    to: ArtifactVersion


@strawberry.type
class LineageGraph:
    root: ArtifactVersion
    nodes: list[ArtifactVersion]
    edges: list[LineageEdge]


@strawberry.type
class Change:
    section: str
    op: str
    path: str
    before: JSON | None
    after: JSON | None
    count: int = strawberry.field(description="Rows this change stands for (a multiset diff "
                                  "of identical rows); 1 otherwise.")


@strawberry.type
class ChangeEdge:
    node: Change
    cursor: str


@strawberry.type
class ChangeConnection:
    edges: list[ChangeEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class Diff:
    comparison: strawberry.Private[Comparison]

    @strawberry.field(name="from")
    def from_(self) -> ArtifactVersion:
        return ArtifactVersion.of(self.comparison.before)

    @strawberry.field
    def to(self) -> ArtifactVersion:
        return ArtifactVersion.of(self.comparison.after)

    @strawberry.field
    def identical(self) -> bool:
        return self.comparison.identical

    @strawberry.field(description="More changes exist than `changes` pages through (the "
                      "first 10,000 are kept); `summary` still counts them all.")
    def truncated(self) -> bool:
        return self.comparison.truncated

    @strawberry.field(description="Counts per section and op.")
    def summary(self) -> JSON:
        return self.comparison.summary

    @strawberry.field
    def changes(self, info: Info, first: int | None = None, after: str | None = None
                ) -> ChangeConnection:
        size = page_size(first)
        start = decode_cursor("change", after)
        offset = 0 if start is None else int(start) + 1
        found = self.comparison.changes
        edges = [ChangeEdge(node=_change(c), cursor=encode_cursor("change", offset + i))
                 for i, c in enumerate(found[offset:offset + size])]
        return ChangeConnection(
            edges=edges, total_count=len(found),
            page_info=PageInfo(has_next_page=offset + size < len(found),
                               end_cursor=edges[-1].cursor if edges else None))


def _change(change: DomainChange) -> Change:
    return Change(section=change.section, op=change.op, path=change.path,
                  before=change.before, after=change.after, count=change.count)
