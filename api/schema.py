"""The GraphQL schema: queries and mutations that call the application services."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator, Iterator
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import psycopg
import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, SchemaExtension
from strawberry.scalars import JSON
from strawberry.tools import merge_types

from api.context import Info
from api.execution import PlainFieldsExecutionContext
from api.limits import LIMIT_MESSAGES, graphql_limits
from api.pagination import decode_cursor, encode_cursor, page_size
from api.schema_ops import OpsMutations, OpsQueries
from api.schema_registry_gql import SchemaMutations, SchemaQueries
from api.types import (
    AnalyticsResult,
    Artifact,
    ArtifactConnection,
    ArtifactEdge,
    ArtifactVersion,
    IngestResult,
    LagState,
    PageInfo,
    ProjectionStatus,
    PromoteResult,
    RebuildResult,
    Stage,
    SystemStatus,
    VersionRefInput,
    WithdrawResult,
)
from api.types_log import (
    Diff,
    Event,
    EventConnection,
    EventEdge,
    LineageEdge,
    LineageGraph,
    ReplayStep,
    replay_state,
)
from core.auth import Scope
from core.batch import IngestOutcome
from core.commands import IngestVersion, PromoteVersion, WithdrawVersion
from core.errors import (
    ArtifactlogError,
    Forbidden,
    LimitExceeded,
    Unavailable,
    ValidationError,
)
from core.history_pg import ArtifactFilter
from core.promotion import Promotions
from core.services import PromoteResult as DomainPromoteResult
from core.settings import Settings

log = logging.getLogger("artifactlog.api")


DEFAULT_LINEAGE_DEPTH = 10
MAX_LINEAGE_DEPTH = 100


@strawberry.enum
class LineageDirection(Enum):
    UPSTREAM = "UPSTREAM"
    DOWNSTREAM = "DOWNSTREAM"


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
    version_scheme: str | None = strawberry.field(
        default=None, description="sequence | semver | calver | digest | template: how this "
        "artifact's versions are labelled from now on")
    label_template: str | None = strawberry.field(
        default=None, description="for the template scheme: {number} {date} {digest} "
        "{meta.KEY}")

    def to_command(self, actor: str | None) -> IngestVersion:
        return IngestVersion(
            namespace=self.namespace, name=self.name, kind=self.kind, content=self.content,
            text=self.text, content_base64=self.content_base64, media_type=self.media_type,
            metadata=self.metadata, parents=tuple(p.to_ref() for p in self.parents or ()),
            producer=self.producer, idempotency_key=self.idempotency_key,
            expected_version=self.expected_version, force=bool(self.force), actor=actor,
            bump=self.bump, scheme=self.version_scheme, template=self.label_template,
        )


@strawberry.type
class BatchError:
    code: str
    message: str


@strawberry.type
class IngestBatchItem:
    index: int
    result: IngestResult | None
    error: BatchError | None

    @classmethod
    def of(cls, outcome: IngestOutcome) -> IngestBatchItem:
        if outcome.error is not None:
            return cls(index=outcome.index, result=None,
                       error=BatchError(code=outcome.error.code, message=outcome.error.message))
        assert outcome.result is not None
        return cls(index=outcome.index, error=None, result=IngestResult(
            version=ArtifactVersion.of(outcome.result.version),
            created=outcome.result.created, position=outcome.result.position))


@strawberry.type
class PolicyVerdict:
    rule: str
    passed: bool
    reason: str


@strawberry.type
class PromotionCheck:
    version: ArtifactVersion
    allowed: bool
    checks: list[PolicyVerdict]


def promote_result(result: DomainPromoteResult) -> PromoteResult:
    previous = ArtifactVersion.of(result.previous) if result.previous else None
    return PromoteResult(version=ArtifactVersion.of(result.version), previous=previous,
                         position=result.position)


@strawberry.type
class Query:
    @strawberry.field(description="An artifact now, or as it was at asOf / atPosition (folded "
                      "from the event log); minPosition waits until the read model has it.")
    async def artifact(
        self, info: Info, namespace: str, name: str, as_of: datetime | None = None,
        at_position: int | None = None, min_position: int | None = None,
    ) -> Artifact | None:
        info.context.require(Scope.READ, namespace)
        view = await info.context.services.history.artifact(
            namespace, name, as_of=as_of, at_position=at_position, min_position=min_position)
        return Artifact(view=view) if view else None

    @strawberry.field(description="Artifacts ordered by namespace and name.")
    async def artifacts(
        self, info: Info, namespace: str | None = None, kind: str | None = None,
        stage: Stage | None = None, name_prefix: str | None = None,
        metadata: JSON | None = None, first: int | None = None, after: str | None = None,
        include_archived: bool = False,
    ) -> ArtifactConnection:
        if metadata is not None and not isinstance(metadata, dict):
            raise ValidationError("metadata must be a JSON object to match against")
        principal = info.context.require(Scope.READ, namespace)
        size = page_size(first)
        cursor = decode_cursor("artifact", after)
        where = ArtifactFilter(namespace, kind, stage.to_domain() if stage else None,
                               name_prefix, metadata, principal.namespaces,
                               include_archived=include_archived)
        found, total = await info.context.services.history.artifacts(
            where, after=tuple(cursor) if cursor else None, limit=size + 1)
        edges = [ArtifactEdge(node=Artifact(view=a),
                              cursor=encode_cursor("artifact", [a.namespace, a.name]))
                 for a in found[:size]]
        return ArtifactConnection(
            edges=edges, total_count=total,
            page_info=PageInfo(has_next_page=len(found) > size,
                               end_cursor=edges[-1].cursor if edges else None))

    @strawberry.field(description="Events of the log in position order.")
    async def events(self, info: Info, after_position: int | None = None,
                     first: int | None = None) -> EventConnection:
        principal = info.context.require(Scope.READ)
        size = page_size(first)
        start = after_position or 0
        store = info.context.services.artifacts.store
        found = await store.read_after(start, size + 1, namespaces=principal.namespaces)
        edges = [EventEdge(node=Event(record=e), cursor=encode_cursor("event", e.position))
                 for e in found[:size]]
        return EventConnection(
            edges=edges,
            total_count=await store.count_after(start, namespaces=principal.namespaces),
            page_info=PageInfo(has_next_page=len(found) > size,
                               end_cursor=edges[-1].cursor if edges else None))

    @strawberry.field(description="Each event of an artifact with its folded state after it.")
    async def replay(self, info: Info, namespace: str, name: str, to_version: int | None = None,
                     to_position: int | None = None) -> list[ReplayStep]:
        info.context.require(Scope.READ, namespace)
        steps = await info.context.services.artifacts.replay(
            namespace, name, to_version=to_version, to_position=to_position)
        return [ReplayStep(event=Event(record=event), state=replay_state(state))
                for event, state in steps]

    @strawberry.field(description="Versions upstream (parents) or downstream (children).")
    async def lineage(self, info: Info, ref: VersionRefInput, direction: LineageDirection,
                      depth: int | None = None) -> LineageGraph:
        walk = depth if depth is not None else DEFAULT_LINEAGE_DEPTH
        if not 0 <= walk <= MAX_LINEAGE_DEPTH:
            raise LimitExceeded(f"depth must be between 0 and {MAX_LINEAGE_DEPTH}")
        info.context.require(Scope.READ, ref.namespace)
        history = info.context.services.history
        root = await history.resolve(ref.to_ref())
        edges = await history.reader.lineage(
            root.key, upstream=direction is LineageDirection.UPSTREAM, depth=walk)
        keys = [root.key, *sorted({k for edge in edges for k in edge} - {root.key},
                                  key=lambda k: (k.namespace, k.name, k.number))]
        found = await info.context.versions.load_many(keys)
        versions = {v.key: ArtifactVersion.of(v) for v in found if v is not None}
        return LineageGraph(
            root=versions[root.key], nodes=[versions[k] for k in keys if k in versions],
            edges=[LineageEdge(from_=versions[p], to=versions[c]) for p, c in edges
                   if p in versions and c in versions])

    @strawberry.field(description="Impact analysis: the PRODUCTION versions downstream of a "
                      "version, at any depth up to the lineage limit.")
    async def impact(self, info: Info, ref: VersionRefInput) -> list[ArtifactVersion]:
        info.context.require(Scope.READ, ref.namespace)
        history = info.context.services.history
        root = await history.resolve(ref.to_ref())
        keys = await history.reader.impact(root.key, depth=MAX_LINEAGE_DEPTH)
        found = await info.context.versions.load_many(keys)
        return [ArtifactVersion.of(v) for v in found if v is not None]

    @strawberry.field(description="What changed between two versions, of one artifact or two.")
    async def diff(self, info: Info,
                   from_: Annotated[VersionRefInput, strawberry.argument(name="from")],
                   to: VersionRefInput, key: list[str] | None = None) -> Diff:
        info.context.require(Scope.READ, from_.namespace)
        info.context.require(Scope.READ, to.namespace)
        comparison = await info.context.services.diffs.diff(from_.to_ref(), to.to_ref(), key)
        return Diff(comparison=comparison)

    @strawberry.field(description="Dry run: every promotion policy's verdict for a version.")
    async def promotion_check(self, info: Info, ref: VersionRefInput) -> PromotionCheck:
        info.context.require(Scope.READ, ref.namespace)
        version, checks = await Promotions(info.context.service).check(ref.to_ref())
        return PromotionCheck(
            version=ArtifactVersion.of(version), allowed=all(c.passed for c in checks),
            checks=[PolicyVerdict(rule=c.rule, passed=c.passed, reason=c.reason)
                    for c in checks])

    @strawberry.field(description="Read-only ClickHouse SQL over the analytics tables.")
    async def analytics(self, info: Info, sql: str) -> AnalyticsResult:
        principal = info.context.require(Scope.READ)
        if principal.namespaces is not None:
            raise Forbidden("a token limited to namespaces cannot run SQL over all of them")
        engine = info.context.services.analytics
        if engine is None:
            raise Unavailable("this process does not serve analytics; ask the API server")
        result = await engine.run(sql)
        return AnalyticsResult(columns=result.columns, types=result.types, rows=result.rows)

    @strawberry.field(description="The log head and each projection's position, lag and "
                      "lag state (ALERT past its thresholds).")
    async def status(self, info: Info) -> SystemStatus:
        info.context.require(Scope.READ)
        services = info.context.services
        found = await services.status.projections_status()
        head = await services.artifacts.store.head_position()
        projections = [ProjectionStatus(
            name=p.name, position=p.position, lag=p.lag, lag_seconds=p.lag_seconds,
            parked=p.parked, state=LagState(p.state), alert_reason=p.alert_reason,
            lag_alert_events=p.thresholds.events if p.thresholds else None,
            lag_alert_seconds=p.thresholds.seconds if p.thresholds else None) for p in found]
        alert = any(p.state is LagState.ALERT for p in projections)
        return SystemStatus(head_position=head, projections=projections,
                            state=LagState.ALERT if alert else LagState.OK)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Rebuild a projection from the event log; shadow: into "
                         "new tables while the live ones keep serving, then switch atomically.")
    async def rebuild_projection(
        self, info: Info, name: str, from_position: int | None = None, shadow: bool = False
    ) -> RebuildResult:
        info.context.require(Scope.ADMIN)
        result = await info.context.services.rebuilder.rebuild(name, from_position,
                                                               shadow=shadow)
        return RebuildResult(projection=result.projection, events=result.events,
                             seconds=result.seconds)

    @strawberry.mutation
    async def ingest(self, info: Info, input: IngestInput) -> IngestResult:
        info.context.require(Scope.WRITE, input.namespace)
        for parent in input.parents or ():
            info.context.require(Scope.READ, parent.namespace)
        result = await info.context.service.ingest(input.to_command(info.context.actor))
        return IngestResult(version=ArtifactVersion.of(result.version),
                            created=result.created, position=result.position)

    @strawberry.mutation(description="Several versions, across artifacts; atomic: all or none.")
    async def ingest_batch(self, info: Info, inputs: list[IngestInput],
                           atomic: bool = True) -> list[IngestBatchItem]:
        for item in inputs:
            info.context.require(Scope.WRITE, item.namespace)
            for parent in item.parents or ():
                info.context.require(Scope.READ, parent.namespace)
        outcomes = await info.context.service.ingest_many(
            [i.to_command(info.context.actor) for i in inputs], atomic=atomic)
        return [IngestBatchItem.of(o) for o in outcomes]

    @strawberry.mutation(description="Change how an artifact's next versions are labelled.")
    async def set_version_scheme(self, info: Info, namespace: str, name: str, scheme: str,
                                 template: str | None = None) -> int:
        info.context.require(Scope.WRITE, namespace)
        return await info.context.service.set_version_scheme(
            namespace, name, scheme, template, info.context.actor)

    @strawberry.mutation(description="Make a version PRODUCTION, if the promotion policies "
                         "pass; override (admin, with a reason) records that they were skipped.")
    async def promote(
        self, info: Info, ref: VersionRefInput, reason: str | None = None,
        override: bool = False,
    ) -> PromoteResult:
        info.context.require(Scope.ADMIN if override else Scope.PROMOTE, ref.namespace)
        result = await info.context.service.promote(
            PromoteVersion(ref.to_ref(), reason, info.context.actor), override=override)
        return promote_result(result)

    @strawberry.mutation(description="Ask for a promotion that a second actor must approve.")
    async def request_promotion(self, info: Info, ref: VersionRefInput,
                                reason: str | None = None) -> int:
        info.context.require(Scope.PROMOTE, ref.namespace)
        return await Promotions(info.context.service).request(ref.to_ref(), reason,
                                                              info.context.actor)

    @strawberry.mutation(description="Approve a requested promotion (not its requester), "
                         "which then takes place if the other policies pass.")
    async def approve_promotion(self, info: Info, ref: VersionRefInput,
                                reason: str | None = None) -> PromoteResult:
        info.context.require(Scope.PROMOTE, ref.namespace)
        result = await Promotions(info.context.service).approve(
            PromoteVersion(ref.to_ref(), reason, info.context.actor))
        return promote_result(result)

    @strawberry.mutation(description="Set the promotion policy of an artifact, or of a "
                         "namespace when name is omitted (rules: a JSON array).")
    async def set_promotion_policy(self, info: Info, namespace: str, rules: JSON,
                                   name: str | None = None) -> int:
        info.context.require(Scope.ADMIN, namespace)
        return await Promotions(info.context.service).set_policy(namespace, name, rules,
                                                                 info.context.actor)

    @strawberry.mutation
    async def withdraw(
        self, info: Info, ref: VersionRefInput, reason: str | None = None
    ) -> WithdrawResult:
        info.context.require(Scope.PROMOTE, ref.namespace)
        result = await info.context.service.withdraw(
            WithdrawVersion(ref.to_ref(), reason, info.context.actor))
        return WithdrawResult(version=ArtifactVersion.of(result.version),
                              position=result.position)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Catch up from a position, then follow live events.")
    async def events(self, info: Info, after_position: int | None = None,
                     namespace: str | None = None) -> AsyncGenerator[Event, None]:
        principal = info.context.require(Scope.READ, namespace)
        async for event in info.context.services.feed.follow(after_position or 0, namespace):
            if principal.can_read(event.namespace):
                yield Event(record=event)


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
    elif isinstance(original, psycopg.OperationalError):  # includes the pool's timeout
        extensions = {"code": "UNAVAILABLE"}
        message = "the database is unavailable; retry (an idempotency key makes it safe)"
    elif original is None and any(m in error.message for m in LIMIT_MESSAGES):
        extensions, message = {"code": "LIMIT"}, error.message
    elif original is None or isinstance(original, GraphQLError):
        extensions, message = {"code": "GRAPHQL_VALIDATION"}, error.message
    else:
        extensions, message = {"code": "INTERNAL"}, "internal error; see the server log"
    return GraphQLError(message, nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path, extensions=extensions)


def _jsonable(details: dict[str, object]) -> dict[str, object]:
    """Details as JSON: scalars, and lists/objects of them (e.g. each violation's pointer)."""
    return {k: json.loads(json.dumps(v, default=str)) for k, v in details.items()}


class ArtifactlogSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: object = None) -> None:
        # Refusals (bad input, not found, conflicts) are answers, not server faults: only
        # unexpected errors deserve a traceback in the log.
        unexpected = [e for e in errors if not isinstance(
            e.original_error, ArtifactlogError | psycopg.OperationalError)
                      and e.original_error is not None]
        if unexpected:
            super().process_errors(unexpected, execution_context)  # type: ignore[arg-type]


def make_schema(settings: Settings) -> ArtifactlogSchema:
    """The schema as one deployment serves it: its limits, and introspection on or off."""
    hide = not settings.graphql_introspection
    # HideSuggestions before ErrorCodes: hooks finish in reverse order, so it edits the copies
    # ErrorCodes makes, never the validation errors api/limits.py caches across requests.
    extensions: list[Any] = [*([HideSuggestions] if hide else []), ErrorCodes, *graphql_limits(
        max_depth=settings.graphql_max_depth, max_aliases=settings.graphql_max_aliases,
        max_tokens=settings.graphql_max_tokens)]
    if hide:
        extensions.append(lambda: AddValidationRules(INTROSPECTION_OFF))
    return ArtifactlogSchema(query=merge_types("Query", (Query, SchemaQueries, OpsQueries)),
                             mutation=merge_types("Mutation", (Mutation, SchemaMutations,
                                                               OpsMutations)),
                             subscription=Subscription, extensions=extensions,
                             execution_context_class=PlainFieldsExecutionContext)


class HideSuggestions(SchemaExtension):
    """With introspection off, "Did you mean ...?" hints would leak the schema."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            for error in result.errors:
                error.message = SUGGESTION.sub("", error.message)


SUGGESTION = re.compile(r" ?Did you mean .*\?$")
INTROSPECTION_OFF = [NoSchemaIntrospectionCustomRule]
schema = make_schema(Settings())
