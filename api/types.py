"""GraphQL object types, as named in the shared contract. Resolvers only call services."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from api.context import Info
from core.artifact import ArtifactState, VersionState
from core.commands import VersionRef
from core.content import decode_content
from core.errors import LimitExceeded, ValidationError


@strawberry.enum
class Stage(Enum):
    DRAFT = "DRAFT"
    PRODUCTION = "PRODUCTION"
    SUPERSEDED = "SUPERSEDED"
    WITHDRAWN = "WITHDRAWN"


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
    state: strawberry.Private[VersionState]

    @strawberry.field
    def namespace(self) -> str:
        return self.state.namespace

    @strawberry.field
    def name(self) -> str:
        return self.state.name

    @strawberry.field
    def number(self) -> int:
        return self.state.number

    @strawberry.field
    def label(self) -> str:
        return self.state.label

    @strawberry.field
    def stage(self) -> Stage:
        return Stage(self.state.stage.value)

    @strawberry.field
    def digest(self) -> str:
        return self.state.digest

    @strawberry.field
    def size(self) -> int:
        return self.state.size

    @strawberry.field
    def media_type(self) -> str | None:
        return self.state.media_type

    @strawberry.field
    def metadata(self) -> JSON | None:
        return dict(self.state.metadata)

    @strawberry.field
    def producer(self) -> str | None:
        return self.state.producer

    @strawberry.field
    def created_at(self) -> datetime:
        return self.state.created_at

    @strawberry.field
    def position(self) -> int:
        return self.state.position

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

    @strawberry.field
    async def parents(self, info: Info) -> list[ArtifactVersion]:
        found = await info.context.reads.versions(self.state.parents)
        return [ArtifactVersion(state=v) for v in found]

    @strawberry.field
    async def children(self, info: Info) -> list[ArtifactVersion]:
        found = await info.context.reads.children(self.state.key)
        return [ArtifactVersion(state=v) for v in found]


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
    version: ArtifactVersion
    previous: ArtifactVersion | None
    reason: str | None
    actor: str | None
    at: datetime
    position: int


@strawberry.type
class Artifact:
    state: strawberry.Private[ArtifactState]

    @strawberry.field
    def namespace(self) -> str:
        return self.state.namespace

    @strawberry.field
    def name(self) -> str:
        return self.state.name

    @strawberry.field
    def kind(self) -> str:
        return self.state.kind or ""

    @strawberry.field
    def latest(self) -> ArtifactVersion | None:
        return _wrap(self.state.latest)

    @strawberry.field
    def production(self) -> ArtifactVersion | None:
        number = self.state.production
        return _wrap(self.state.version(number)) if number else None

    @strawberry.field
    def version(self, number: int | None = None, label: str | None = None
                ) -> ArtifactVersion | None:
        if number is None and label is None:
            return _wrap(self.state.latest)
        if number is not None:
            found = self.state.version(number)
            return _wrap(found) if found and label in (None, found.label) else None
        return _wrap(next((v for v in self.state.versions if v.label == label), None))

    @strawberry.field
    def versions(
        self, stage: Stage | None = None, first: int | None = None, after: str | None = None
    ) -> ArtifactVersionConnection:
        chosen = [v for v in self.state.versions if stage is None or v.stage.value == stage.value]
        return paginate(chosen, first=first, after=after)

    @strawberry.field
    def promotions(self) -> list[Promotion]:
        return [
            Promotion(
                version=ArtifactVersion(state=self.state.versions[event.number - 1]),
                previous=_wrap(self.state.version(event.previous)) if event.previous else None,
                reason=event.reason, actor=recorded.metadata.get("actor"),
                at=recorded.recorded_at, position=recorded.position,
            )
            for recorded, event in self.state.promotions
        ]


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


MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def paginate(
    versions: list[VersionState], *, first: int | None, after: str | None
) -> ArtifactVersionConnection:
    """Cursor pagination over versions ordered by number; the cursor encodes the number."""
    size = DEFAULT_PAGE_SIZE if first is None else first
    if size < 0:
        raise ValidationError("first must not be negative")
    if size > MAX_PAGE_SIZE:
        raise LimitExceeded(f"first must be at most {MAX_PAGE_SIZE}")
    start_after = decode_cursor(after) if after else 0
    remaining = [v for v in versions if v.number > start_after]
    page = remaining[:size]
    edges = [ArtifactVersionEdge(node=ArtifactVersion(state=v), cursor=encode_cursor(v.number))
             for v in page]
    return ArtifactVersionConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=len(remaining) > len(page),
                           end_cursor=edges[-1].cursor if edges else None),
        total_count=len(versions),
    )


def encode_cursor(number: int) -> str:
    return base64.urlsafe_b64encode(f"v:{number}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "v":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"invalid cursor {cursor!r}") from exc


def _wrap(state: VersionState | None) -> ArtifactVersion | None:
    return ArtifactVersion(state=state) if state is not None else None

