"""GraphQL object types, as named in the shared contract. Resolvers only call services."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api.context import Info
from api.execution import PRELOADED
from api.pagination import decode_cursor, encode_cursor, page_size
from core.artifact import Stage as DomainStage
from core.artifact import VersionState
from core.commands import VersionRef
from core.content import decode_content
from core.events import VersionKey
from core.history import ArtifactView
from core.history_pg import PromotionRecord


@strawberry.enum
class Stage(Enum):
    DRAFT = "DRAFT"
    PRODUCTION = "PRODUCTION"
    SUPERSEDED = "SUPERSEDED"
    WITHDRAWN = "WITHDRAWN"

    def to_domain(self) -> DomainStage:
        return DomainStage(self.value)


@strawberry.input
class VersionRefInput:
    namespace: str
    name: str
    number: int | None = None
    label: str | None = None

    def to_ref(self) -> VersionRef:
        return VersionRef(self.namespace, self.name, self.number, self.label)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ArtifactVersion:
    # Plain attributes, not resolver methods: strawberry's per-field resolver machinery is
    # most of the cost of a page of versions (profiled), and these need no computing.
    namespace: str
    name: str
    number: int
    label: str
    stage: Stage
    digest: str
    size: int
    media_type: str | None
    metadata: JSON | None
    producer: str | None
    created_at: datetime
    position: int
    purged: bool  # retention removed its content (the version and its history stay)
    state: strawberry.Private[VersionState]
    # Set by a page of versions that loaded every node's parents at once (see ``parents``).
    parent_versions: strawberry.Private[list[ArtifactVersion] | None] = None

    @classmethod
    def of(cls, state: VersionState) -> ArtifactVersion:
        return cls(namespace=state.namespace, name=state.name, number=state.number,
                   label=state.label, stage=Stage(state.stage.value), digest=state.digest,
                   size=state.size, media_type=state.media_type, metadata=dict(state.metadata),
                   producer=state.producer, created_at=state.created_at,
                   position=state.position, purged=state.purged, state=state)

    @strawberry.field(description="Structured content, when the version has one.")
    async def content(self, info: Info) -> JSON | None:
        if self.state.content_type != "json":
            return None
        return decode_content(await info.context.service.content_of(self.state), "json")

    @strawberry.field(description="Text content, when the version is text.")
    async def text(self, info: Info) -> str | None:
        if self.state.content_type != "text":
            return None
        return decode_content(await info.context.service.content_of(self.state), "text")

    @strawberry.field(description="Raw bytes, base64-encoded, for any content type.")
    async def content_base64(self, info: Info) -> str:
        return base64.b64encode(await info.context.service.content_of(self.state)).decode()

    # A page of versions fills ``parent_versions`` for all its nodes at once; then the
    # execution context reads it without calling this (api/execution.py PRELOADED).
    @strawberry.field(metadata={PRELOADED: "parent_versions"})
    async def parents(self, info: Info) -> list[ArtifactVersion]:
        if self.parent_versions is not None:
            return self.parent_versions
        found = await info.context.versions.load_many(list(self.state.parents))
        return [ArtifactVersion.of(v) for v in found if v is not None]

    @strawberry.field
    async def children(self, info: Info) -> list[ArtifactVersion]:
        keys = await info.context.children.load(self.state.key)
        found = await info.context.versions.load_many(keys)
        return [ArtifactVersion.of(v) for v in found if v is not None]


@strawberry.type
class ArtifactVersionEdge:
    node: ArtifactVersion
    cursor: str


@strawberry.type
class ArtifactVersionConnection:
    edges: list[ArtifactVersionEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class Promotion:
    record: strawberry.Private[PromotionRecord]

    @strawberry.field
    async def version(self, info: Info) -> ArtifactVersion:
        found = await info.context.versions.load(self._key(self.record.number))
        assert found is not None, "a promoted version always exists"
        return ArtifactVersion.of(found)

    @strawberry.field
    async def previous(self, info: Info) -> ArtifactVersion | None:
        if self.record.previous is None:
            return None
        found = await info.context.versions.load(self._key(self.record.previous))
        return ArtifactVersion.of(found) if found else None

    @strawberry.field
    def reason(self) -> str | None:
        return self.record.reason

    @strawberry.field
    def actor(self) -> str | None:
        return self.record.actor

    @strawberry.field
    def at(self) -> datetime:
        return self.record.at

    @strawberry.field
    def position(self) -> int:
        return self.record.position

    def _key(self, number: int) -> VersionKey:
        return VersionKey(self.record.namespace, self.record.name, number)


@strawberry.type
class Artifact:
    view: strawberry.Private[ArtifactView]

    @strawberry.field
    def namespace(self) -> str:
        return self.view.namespace

    @strawberry.field
    def name(self) -> str:
        return self.view.name

    @strawberry.field
    def kind(self) -> str:
        return self.view.kind

    @strawberry.field(description="Hidden from listings (archiveArtifact); history kept.")
    async def archived(self) -> bool:
        return await self.view.archived()

    @strawberry.field
    async def latest(self) -> ArtifactVersion | None:
        return _wrap(await self.view.latest())

    @strawberry.field
    async def production(self) -> ArtifactVersion | None:
        return _wrap(await self.view.production())

    @strawberry.field(description="A version by number or label; neither: the latest.")
    async def version(self, number: int | None = None, label: str | None = None
                      ) -> ArtifactVersion | None:
        if number is None and label is None:
            return _wrap(await self.view.latest())
        return _wrap(await self.view.version(number, label))

    @strawberry.field
    async def versions(self, info: Info, stage: Stage | None = None, first: int | None = None,
                       after: str | None = None) -> ArtifactVersionConnection:
        size = page_size(first)
        after_number = decode_cursor("version", after) or 0
        page, total = await self.view.versions(stage.to_domain() if stage else None,
                                               after_number, size + 1)
        nodes = [ArtifactVersion.of(v) for v in page[:size]]
        if _selects(info.selected_fields, "parents"):
            await _load_parents(info, nodes)
        edges = [ArtifactVersionEdge(node=node, cursor=encode_cursor("version", node.number))
                 for node in nodes]
        return ArtifactVersionConnection(
            edges=edges, total_count=total,
            page_info=PageInfo(has_next_page=len(page) > size,
                               end_cursor=edges[-1].cursor if edges else None))

    @strawberry.field(description="Every change of the production pointer, oldest first.")
    async def promotions(self) -> list[Promotion]:
        return [Promotion(record=r) for r in await self.view.promotions()]


@strawberry.type
class ArtifactEdge:
    node: Artifact
    cursor: str


@strawberry.type
class ArtifactConnection:
    edges: list[ArtifactEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class IngestResult:
    version: ArtifactVersion
    created: bool
    position: int


@strawberry.type
class PromoteResult:
    version: ArtifactVersion
    previous: ArtifactVersion | None
    position: int


@strawberry.type
class WithdrawResult:
    version: ArtifactVersion
    position: int


@strawberry.enum(description="OK, or ALERT when a projection's lag crosses a threshold.")
class LagState(Enum):
    OK = "OK"
    ALERT = "ALERT"


@strawberry.type
class ProjectionStatus:
    name: str
    position: int
    lag: int
    lag_seconds: float | None
    parked: int
    state: LagState = LagState.OK
    alert_reason: str | None = strawberry.field(
        default=None, description="Which threshold the lag crosses, when the state is ALERT.")
    lag_alert_events: int | None = strawberry.field(
        default=None, description="The lag, in events, above which the state is ALERT.")
    lag_alert_seconds: float | None = strawberry.field(
        default=None, description="The lag, in seconds, above which the state is ALERT.")


@strawberry.type
class SystemStatus:
    head_position: int
    projections: list[ProjectionStatus]
    state: LagState = strawberry.field(
        default=LagState.OK, description="ALERT when any projection is in ALERT.")


@strawberry.type
class AnalyticsResult:
    columns: list[str]
    types: list[str]
    rows: list[list[JSON | None]]


@strawberry.type
class RebuildResult:
    projection: str
    events: int
    seconds: float


def _wrap(state: VersionState | None) -> ArtifactVersion | None:
    return ArtifactVersion.of(state) if state is not None else None


def _selects(selections: Sequence[Any], name: str) -> bool:
    """Whether a field called ``name`` is selected anywhere below (fragments included)."""
    return any(getattr(s, "name", None) == name or _selects(getattr(s, "selections", ()), name)
               for s in selections)


async def _load_parents(info: Info, nodes: Sequence[ArtifactVersion]) -> None:
    """Every node's parents with one batched load, read by ``parents`` as preloaded."""
    keys = list(dict.fromkeys(k for node in nodes for k in node.state.parents))
    found = dict(zip(keys, await info.context.versions.load_many(keys), strict=True))
    for node in nodes:
        node.parent_versions = [ArtifactVersion.of(v) for k in node.state.parents
                                if (v := found[k]) is not None]
