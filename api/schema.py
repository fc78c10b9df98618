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
from api.types import (
    Artifact,
    ArtifactVersion,
    IngestResult,
    PromoteResult,
    VersionRefInput,
    WithdrawResult,
)
from core.commands import IngestVersion, PromoteVersion, WithdrawVersion
from core.errors import ArtifactlogError, ValidationError

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
    @strawberry.field
    async def artifact(
        self, info: Info, namespace: str, name: str, as_of: datetime | None = None,
        at_position: int | None = None, min_position: int | None = None,
    ) -> Artifact | None:
        if as_of is not None:
            raise ValidationError("asOf is not supported yet; use atPosition")
        state = await info.context.service.load(namespace, name, to_position=at_position)
        return Artifact(state=state) if state.exists else None


@strawberry.type
class Mutation:
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
