"""What each dashboard page shows, gathered from the application services for one principal:
rows in namespaces the principal may not read are left out, as GraphQL leaves them out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from api.context import Services
from api.dashboard_charts import Chart, ingest_chart, lag_chart
from api.dashboard_lineage import Layout, layout
from core.activity_pg import Activity
from core.artifact import Stage, VersionState
from core.auth import Principal, Scope
from core.commands import VersionRef
from core.errors import NotFound
from core.events import VersionKey
from core.history_pg import ArtifactFilter, ArtifactSummary, PromotionRecord
from projections.status import ProjectionStatus

RECENT_ROWS = 15
ARTIFACT_ROWS = 50
VERSION_ROWS = 100


@dataclass(frozen=True)
class HomePage:
    head: int
    projections: list[ProjectionStatus]
    ingests: Chart
    lag: Chart
    minutes: int
    recent_ingests: list[Activity]
    recent_promotions: list[Activity]
    artifacts: list[ArtifactSummary]
    artifact_total: int
    prefix: str


@dataclass(frozen=True)
class ArtifactPage:
    summary: ArtifactSummary
    versions: list[VersionState]
    version_total: int
    next_after: int | None  # the ?after= of the next (newer) page, None on the last
    previous_after: int | None  # the ?after= of the previous (older) page, None on the first
    stage: Stage | None
    promotions: list[PromotionRecord]


@dataclass(frozen=True)
class LineagePage:
    root: VersionState
    depth: int
    picture: Layout
    versions: dict[VersionKey, VersionState]
    hidden: int  # versions in namespaces the principal may not read
    edges: list[tuple[VersionKey, VersionKey]]  # the drawn ones, also listed as links


async def home(services: Services, principal: Principal, *, minutes: int,
               prefix: str) -> HomePage:
    readable = principal.namespaces
    per_minute = await services.activity.ingests_per_minute(minutes, namespaces=readable)
    ingests = ingest_chart(per_minute)
    start = per_minute[0][0]
    end = per_minute[-1][0] + timedelta(minutes=1)
    samples = await services.lag_samples.series(minutes)
    artifacts, total = await services.history.artifacts(
        ArtifactFilter(name_prefix=prefix or None, readable=readable), after=None,
        limit=ARTIFACT_ROWS)
    return HomePage(
        head=await services.artifacts.store.head_position(),
        projections=await services.status.projections_status(),
        ingests=ingests, lag=lag_chart(samples, start, end), minutes=minutes,
        recent_ingests=await services.activity.recent_ingests(limit=RECENT_ROWS,
                                                              namespaces=readable),
        recent_promotions=await services.activity.recent_promotions(limit=RECENT_ROWS,
                                                                    namespaces=readable),
        artifacts=[a.summary for a in artifacts], artifact_total=total, prefix=prefix)


async def artifact(services: Services, principal: Principal, namespace: str, name: str, *,
                   stage: Stage | None, after: int | None) -> ArtifactPage:
    """A page of the artifact's versions after number ``after``; by default the newest page
    (all stages) or the first (one stage, whose numbers are not contiguous)."""
    principal.require(Scope.READ, namespace)
    found = await services.history.reader.artifact(namespace, name)
    if found is None:
        raise NotFound(f"there is no artifact {namespace}/{name}")
    if after is None:
        after = 0 if stage else max(found.latest_number - VERSION_ROWS, 0)
    versions, total = await services.history.reader.versions_page(
        namespace, name, stage=stage, after_number=after, limit=VERSION_ROWS + 1)
    more = len(versions) > VERSION_ROWS
    versions = versions[:VERSION_ROWS]
    return ArtifactPage(found, versions, total, versions[-1].number if more else None,
                        max(after - VERSION_ROWS, 0) if after > 0 else None, stage,
                        await services.history.reader.promotions(namespace, name))


async def lineage(services: Services, principal: Principal, namespace: str, name: str,
                  number: int, *, depth: int) -> LineagePage:
    """The version, its ancestors and its descendants within ``depth`` steps."""
    principal.require(Scope.READ, namespace)
    history = services.history
    root = await history.resolve(VersionRef(namespace, name, number))
    edges = sorted({*await history.reader.lineage(root.key, upstream=True, depth=depth),
                    *await history.reader.lineage(root.key, upstream=False, depth=depth)},
                   key=_edge_order)
    keys = {k for edge in edges for k in edge} - {root.key}
    readable = {k for k in keys if principal.can_read(k.namespace)}
    found = await history.versions_by_key(sorted(readable, key=_key_order))
    versions = {root.key: root, **found}
    shown = [(p, c) for p, c in edges if p in versions and c in versions]
    picture = layout(root.key, shown)
    drawn = {n.key for n in picture.nodes}
    return LineagePage(root, depth, picture, versions, hidden=len(keys - readable),
                       edges=[(p, c) for p, c in shown if p in drawn and c in drawn])


def _key_order(key: VersionKey) -> tuple[Any, ...]:
    return key.namespace, key.name, key.number


def _edge_order(edge: tuple[VersionKey, VersionKey]) -> tuple[Any, ...]:
    return (*_key_order(edge[0]), *_key_order(edge[1]))
