"""The GraphQL schema: queries and mutations that call the application services."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.scalars import JSON

from api.context import Info
from api.pagination import decode_cursor, encode_cursor, page_size
from api.types import (
    AnalyticsResult,
    Artifact,
    ArtifactConnection,
    ArtifactEdge,
    ArtifactVersion,
    IngestResult,
    PageInfo,
    ProjectionStatus,
    PromoteResult,
    RebuildResult,
    Stage,
    SystemStatus,
    VersionRefInput,
    WithdrawResult,
)
from core.commands import IngestVersion, PromoteVersion, WithdrawVersion
from core.errors import ArtifactlogError, Unavailable, ValidationError
from core.history_pg import ArtifactFilter

log = logging.getLogger("artifactlog.api")


@strawberry.input
class IngestInput:
    namespace: str
    name: str
    kind: str | None = None
    content: JSON | None = None
    text: str | None = None
    content_base64: str | None = None
    media_type: str | None = None
    metadata: JSON | None = None
    parents: list[VersionRefInput] | None = None
    producer: str | None = None
    idempotency_key: str | None = None
    expected_version: int | None = None
    bump: str | None = None
    force: bool | None = False

    def to_command(self, actor: str | None) -> IngestVersion:
        return IngestVersion(
            namespace=self.namespace, name=self.name, kind=self.kind, content=self.content,
            text=self.text, content_base64=self.content_base64, media_type=self.media_type,
            metadata=self.metadata, parents=tuple(p.to_ref() for p in self.parents or ()),
            producer=self.producer, idempotency_key=self.idempotency_key,
            expected_version=self.expected_version, force=bool(self.force), actor=actor,
        )


@strawberry.type
class Query:
    @strawberry.field(description="An artifact now, or as it was at asOf / atPosition (folded "
                      "from the event log); minPosition waits until the read model has it.")
    async def artifact(
        self, info: Info, namespace: str, name: str, as_of: datetime | None = None,
        at_position: int | None = None, min_position: int | None = None,
    ) -> Artifact | None:
        view = await info.context.services.history.artifact(
            namespace, name, as_of=as_of, at_position=at_position, min_position=min_position)
        return Artifact(view=view) if view else None

    @strawberry.field(description="Artifacts ordered by namespace and name.")
    async def artifacts(
        self, info: Info, namespace: str | None = None, kind: str | None = None,
        stage: Stage | None = None, name_prefix: str | None = None,
        metadata: JSON | None = None, first: int | None = None, after: str | None = None,
    ) -> ArtifactConnection:
        if metadata is not None and not isinstance(metadata, dict):
            raise ValidationError("metadata must be a JSON object to match against")
        size = page_size(first)
        cursor = decode_cursor("artifact", after)
        where = ArtifactFilter(namespace, kind, stage.to_domain() if stage else None,
                               name_prefix, metadata)
        found, total = await info.context.services.history.artifacts(
            where, after=tuple(cursor) if cursor else None, limit=size + 1)
        edges = [ArtifactEdge(node=Artifact(view=a),
                              cursor=encode_cursor("artifact", [a.namespace, a.name]))
                 for a in found[:size]]
        return ArtifactConnection(
            edges=edges, total_count=total,
            page_info=PageInfo(has_next_page=len(found) > size,
                               end_cursor=edges[-1].cursor if edges else None))

    @strawberry.field(description="Read-only ClickHouse SQL over the analytics tables.")
    async def analytics(self, info: Info, sql: str) -> AnalyticsResult:
        engine = info.context.services.analytics
        if engine is None:
            raise Unavailable("this process does not serve analytics; ask the API server")
        result = await engine.run(sql)
        return AnalyticsResult(columns=result.columns, types=result.types, rows=result.rows)

    @strawberry.field(description="The log head and each projection's position and lag.")
    async def status(self, info: Info) -> SystemStatus:
        services = info.context.services
        found = await services.status.projections_status()
        head = await services.artifacts.store.head_position()
        return SystemStatus(head_position=head, projections=[
            ProjectionStatus(name=p.name, position=p.position, lag=p.lag,
                             lag_seconds=p.lag_seconds, parked=p.parked) for p in found])


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Rebuild a projection from the event log.")
    async def rebuild_projection(
        self, info: Info, name: str, from_position: int | None = None
    ) -> RebuildResult:
        result = await info.context.services.rebuilder.rebuild(name, from_position)
        return RebuildResult(projection=result.projection, events=result.events,
                             seconds=result.seconds)

    @strawberry.mutation
    async def ingest(self, info: Info, input: IngestInput) -> IngestResult:
        result = await info.context.service.ingest(input.to_command(info.context.actor))
        return IngestResult(version=ArtifactVersion(state=result.version),
                            created=result.created, position=result.position)

    @strawberry.mutation
    async def promote(
        self, info: Info, ref: VersionRefInput, reason: str | None = None
    ) -> PromoteResult:
        result = await info.context.service.promote(
            PromoteVersion(ref.to_ref(), reason, info.context.actor))
        previous = ArtifactVersion(state=result.previous) if result.previous else None
        return PromoteResult(version=ArtifactVersion(state=result.version), previous=previous,
                             position=result.position)

    @strawberry.mutation
    async def withdraw(
        self, info: Info, ref: VersionRefInput, reason: str | None = None
    ) -> WithdrawResult:
        result = await info.context.service.withdraw(
            WithdrawVersion(ref.to_ref(), reason, info.context.actor))
        return WithdrawResult(version=ArtifactVersion(state=result.version),
                              position=result.position)


class ErrorCodes(SchemaExtension):
    """Give every error a machine-readable ``extensions.code``; hide internals of bugs."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = [_coded(error) for error in result.errors]


def _coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ArtifactlogError):
        extensions = {"code": original.code, **_jsonable(original.details)}
        message = original.message
    elif original is None:
        extensions, message = {"code": "GRAPHQL_VALIDATION"}, error.message
    else:
        extensions, message = {"code": "INTERNAL"}, "internal error; see the server log"
    return GraphQLError(message, nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path, extensions=extensions)


def _jsonable(details: dict[str, object]) -> dict[str, object]:
    return {k: v if isinstance(v, (int, str, float, bool)) else str(v)
            for k, v in details.items()}


class ArtifactlogSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: object = None) -> None:
        # Refusals (bad input, not found, conflicts) are answers, not server faults: only
        # unexpected errors deserve a traceback in the log.
        unexpected = [e for e in errors if not isinstance(e.original_error, ArtifactlogError)
                      and e.original_error is not None]
        if unexpected:
            super().process_errors(unexpected, execution_context)  # type: ignore[arg-type]


schema = ArtifactlogSchema(query=Query, mutation=Mutation, extensions=[ErrorCodes])
