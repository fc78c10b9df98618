"""What every resolver can reach: the application services, and per-request data loaders that
batch the lookups a page of results needs into one query each (no N+1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import strawberry
from strawberry.dataloader import DataLoader

from core.activity_pg import ActivityReader
from core.analytics_sql import ReadOnlySql
from core.artifact import VersionState
from core.auth import Principal, Scope
from core.comparison import DiffService
from core.errors import Unauthenticated
from core.events import VersionKey
from core.feed import EventFeed
from core.history import HistoryQueries
from core.lag_samples import LagSamples
from core.retention import Retention
from core.services import ArtifactService
from core.webhooks_service import WebhookService
from projections.rebuild import Rebuilder
from projections.status import StatusQueries


@dataclass
class Services:
    """The application services one API process shares across requests."""

    artifacts: ArtifactService
    history: HistoryQueries
    status: StatusQueries
    rebuilder: Rebuilder
    diffs: DiffService
    feed: EventFeed
    activity: ActivityReader  # the dashboard's recent ingests, promotions and ingest rate
    lag_samples: LagSamples  # the dashboard's lag chart
    analytics: ReadOnlySql | None = None  # None: this process does not serve analytics
    webhooks: WebhookService | None = None  # subscriptions and their delivery log
    retention: Retention | None = None  # retention policies, purges and archiving


@dataclass
class Context:
    services: Services
    principal: Principal | None = None
    connection_params: dict[str, object] | None = None
    versions: DataLoader[VersionKey, VersionState | None] = field(init=False)
    children: DataLoader[VersionKey, list[VersionKey]] = field(init=False)

    def __post_init__(self) -> None:
        history = self.services.history

        async def load_versions(keys: list[VersionKey]) -> list[VersionState | None]:
            # Versions in namespaces this token may not read are simply not there for it.
            found = await history.versions_by_key([k for k in keys if self.may_read(k)])
            return [found.get(k) for k in keys]

        async def load_children(keys: list[VersionKey]) -> list[list[VersionKey]]:
            found = await history.children(keys)
            return [[c for c in found.get(k, []) if self.may_read(c)] for k in keys]

        self.versions = DataLoader(load_fn=load_versions)
        self.children = DataLoader(load_fn=load_children)

    @property
    def service(self) -> ArtifactService:
        return self.services.artifacts

    @property
    def actor(self) -> str | None:
        return self.principal.name if self.principal else None

    def require(self, scope: Scope, namespace: str | None = None) -> Principal:
        """The caller, if allowed ``scope`` (in ``namespace``); else UNAUTHENTICATED/FORBIDDEN."""
        if self.principal is None:
            raise Unauthenticated("an API token is required (Authorization: Bearer ...)")
        self.principal.require(scope, namespace)
        return self.principal

    def may_read(self, key: VersionKey) -> bool:
        return self.principal is not None and self.principal.can_read(key.namespace)


Info = strawberry.Info[Context, None]
