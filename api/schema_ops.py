"""GraphQL for operations: webhooks (subscribe, list, the delivery log) and retention
(policies per namespace, apply, archive). Webhooks and retention settings need the admin
scope; archiving an artifact needs promote in its namespace. A webhook's secret is in the
answer to createWebhook and nowhere else."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.context import Info
from core.auth import Scope
from core.errors import Unavailable
from core.retention import Retention, RetentionReport
from core.retention_pg import RetentionPolicy as DomainPolicy
from core.webhooks import Webhook as DomainWebhook
from core.webhooks_pg import Attempt, Delivery
from core.webhooks_service import WebhookService


@strawberry.type
class Webhook:
    id: str
    url: str
    event_types: list[str] = strawberry.field(description="Empty: every event type.")
    namespaces: list[str] = strawberry.field(description="Empty: every namespace.")
    description: str | None
    checkpoint: int = strawberry.field(
        description="The last log position this webhook has taken deliveries up to.")
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, found: DomainWebhook) -> Webhook:
        return cls(id=str(found.id), url=found.url, event_types=list(found.event_types),
                   namespaces=list(found.namespaces), description=found.description,
                   checkpoint=found.checkpoint, created_at=found.created_at,
                   created_by=found.created_by)


@strawberry.type
class CreatedWebhook:
    webhook: Webhook
    secret: str = strawberry.field(description="The signing secret, shown this once.")


@strawberry.type
class WebhookAttempt:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float

    @classmethod
    def of(cls, found: Attempt) -> WebhookAttempt:
        return cls(attempt=found.attempt, at=found.at, status_code=found.status_code,
                   error=found.error, duration_ms=found.duration_ms)


@strawberry.type
class WebhookDelivery:
    id: str = strawberry.field(description="Sent as Artifactlog-Delivery on every attempt.")
    position: int
    event_id: str
    event_type: str
    namespace: str
    name: str
    status: str = strawberry.field(description="PENDING, DELIVERED or FAILED.")
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[WebhookAttempt]

    @classmethod
    def of(cls, found: Delivery, attempts: list[Attempt]) -> WebhookDelivery:
        return cls(id=str(found.id), position=found.position, event_id=str(found.event_id),
                   event_type=found.event_type, namespace=found.namespace, name=found.name,
                   status=found.status, attempt_count=found.attempts,
                   next_attempt_at=found.next_attempt_at if found.status == "PENDING"
                   else None, last_error=found.last_error, created_at=found.created_at,
                   delivered_at=found.delivered_at,
                   attempts=[WebhookAttempt.of(a) for a in attempts])


@strawberry.type
class RetentionPolicy:
    namespace: str
    draft_days: int
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, found: DomainPolicy) -> RetentionPolicy:
        return cls(namespace=found.namespace, draft_days=found.draft_days,
                   updated_at=found.updated_at, updated_by=found.updated_by)


@strawberry.type
class PurgedVersion:
    namespace: str
    name: str
    number: int
    digest: str
    size: int


@strawberry.type
class RetentionResult:
    dry_run: bool
    purged: list[PurgedVersion]
    digests_deleted: list[str] = strawberry.field(
        description="Content whose bytes were (dry run: would be) removed.")
    digests_kept: list[str] = strawberry.field(
        description="Purged versions' content still used by an unpurged version.")

    @classmethod
    def of(cls, report: RetentionReport) -> RetentionResult:
        return cls(dry_run=report.dry_run, digests_deleted=report.digests_deleted,
                   digests_kept=report.digests_kept, purged=[
                       PurgedVersion(namespace=p.key.namespace, name=p.key.name,
                                     number=p.key.number, digest=p.digest, size=p.size)
                       for p in report.purged])


def webhooks(info: Info) -> WebhookService:
    found = info.context.services.webhooks
    if found is None:
        raise Unavailable("webhooks are not configured in this process")
    return found


def retention(info: Info) -> Retention:
    found = info.context.services.retention
    if found is None:
        raise Unavailable("retention is not configured in this process")
    return found


@strawberry.type
class OpsQueries:
    @strawberry.field(description="Every webhook (never its secret).")
    async def webhooks(self, info: Info) -> list[Webhook]:
        info.context.require(Scope.ADMIN)
        return [Webhook.of(w) for w in await webhooks(info).list()]

    @strawberry.field(description="A webhook's deliveries, newest first, with every attempt.")
    async def webhook_deliveries(self, info: Info, webhook_id: str,
                                 status: str | None = None, first: int = 100
                                 ) -> list[WebhookDelivery]:
        info.context.require(Scope.ADMIN)
        found = await webhooks(info).deliveries(webhook_id, status=status, limit=first)
        return [WebhookDelivery.of(d, attempts) for d, attempts in found]

    @strawberry.field(description="Retention policies, one per namespace that has one.")
    async def retention_policies(self, info: Info, namespace: str | None = None
                                 ) -> list[RetentionPolicy]:
        info.context.require(Scope.ADMIN)
        return [RetentionPolicy.of(p) for p in await retention(info).policies(namespace)]


@strawberry.type
class OpsMutations:
    @strawberry.mutation(description="Send the chosen events (types, namespaces; none: all) "
                         "to url, HMAC-signed; the answer holds the secret, shown once.")
    async def create_webhook(self, info: Info, url: str, event_types: list[str] | None = None,
                             namespaces: list[str] | None = None,
                             description: str | None = None,
                             from_position: int | None = None) -> CreatedWebhook:
        info.context.require(Scope.ADMIN)
        created, secret = await webhooks(info).create(
            url, event_types=event_types or (), namespaces=namespaces or (),
            description=description, from_position=from_position, actor=info.context.actor)
        return CreatedWebhook(webhook=Webhook.of(created), secret=secret)

    @strawberry.mutation(description="Stop and remove a webhook with its delivery log.")
    async def delete_webhook(self, info: Info, id: str) -> bool:
        info.context.require(Scope.ADMIN)
        await webhooks(info).delete(id)
        return True

    @strawberry.mutation(description="Purge the content of the namespace's drafts never "
                         "promoted once they are draftDays old.")
    async def set_retention_policy(self, info: Info, namespace: str, draft_days: int
                                   ) -> RetentionPolicy:
        info.context.require(Scope.ADMIN)
        found = await retention(info).set_policy(namespace, draft_days, info.context.actor)
        return RetentionPolicy.of(found)

    @strawberry.mutation(description="Remove a namespace's retention policy.")
    async def remove_retention_policy(self, info: Info, namespace: str) -> bool:
        info.context.require(Scope.ADMIN)
        return await retention(info).remove_policy(namespace)

    @strawberry.mutation(description="Apply the retention policies now (a dry run writes "
                         "nothing and says what would be purged).")
    async def apply_retention(self, info: Info, dry_run: bool = False,
                              namespace: str | None = None) -> RetentionResult:
        info.context.require(Scope.ADMIN)
        report = await retention(info).apply(dry_run=dry_run, namespace=namespace,
                                             actor=info.context.actor)
        return RetentionResult.of(report)

    @strawberry.mutation(description="Hide an artifact from listings; its history stays.")
    async def archive_artifact(self, info: Info, namespace: str, name: str,
                               reason: str | None = None) -> int:
        info.context.require(Scope.PROMOTE, namespace)
        return await retention(info).archive(namespace, name, archived=True, reason=reason,
                                             actor=info.context.actor)

    @strawberry.mutation(description="List an archived artifact again.")
    async def unarchive_artifact(self, info: Info, namespace: str, name: str,
                                 reason: str | None = None) -> int:
        info.context.require(Scope.PROMOTE, namespace)
        return await retention(info).archive(namespace, name, archived=False, reason=reason,
                                             actor=info.context.actor)
