"""Reads of the version-history read model (the tables projections/version_history.py keeps).

Every method is one SQL statement, whatever the page size: parents of a page of versions are
fetched together, never per version.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.artifact import Stage, VersionState
from core.events import VersionKey

VERSION_COLUMNS = sql.SQL(
    "v.namespace, v.name, v.number, v.label, v.stage, v.digest, v.size, v.media_type,"
    " v.content_type, v.metadata, v.producer, v.created_at, v.position, v.purged")


@dataclass(frozen=True)
class ArtifactSummary:
    namespace: str
    name: str
    kind: str
    latest_number: int
    production_number: int | None
    position: int
    archived: bool = False


@dataclass(frozen=True)
class PromotionRecord:
    namespace: str
    name: str
    number: int
    previous: int | None
    reason: str | None
    actor: str | None
    at: datetime
    position: int


@dataclass(frozen=True)
class ArtifactFilter:
    namespace: str | None = None
    kind: str | None = None
    stage: Stage | None = None
    name_prefix: str | None = None
    metadata: dict[str, Any] | None = None
    readable: frozenset[str] | None = None  # namespaces the caller may see (None: all)
    include_archived: bool = False  # archived artifacts are hidden from listings by default


class HistoryReader:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def artifact(self, namespace: str, name: str) -> ArtifactSummary | None:
        rows = await self._rows(
            sql.SQL("SELECT namespace, name, kind, latest_number, production_number, position,"
                    " archived FROM vh_artifacts WHERE namespace = %s AND name = %s"),
            (namespace, name))
        return ArtifactSummary(**rows[0]) if rows else None

    async def artifacts(self, where: ArtifactFilter, *, after: tuple[str, str] | None,
                        limit: int) -> tuple[list[ArtifactSummary], int]:
        """A page of artifacts ordered by (namespace, name), and the total matching."""
        conditions, params = _artifact_conditions(where)
        total = await self._rows(sql.SQL("SELECT count(*) AS n FROM vh_artifacts a WHERE ")
                                 + conditions, params)
        page_conditions = conditions
        if after is not None:
            page_conditions += sql.SQL(" AND (a.namespace, a.name) > (%s, %s)")
            params = [*params, *after]
        rows = await self._rows(
            sql.SQL("SELECT a.namespace, a.name, a.kind, a.latest_number, a.production_number,"
                    " a.position, a.archived FROM vh_artifacts a WHERE ") + page_conditions
            + sql.SQL(" ORDER BY a.namespace, a.name LIMIT %s"), [*params, limit])
        return [ArtifactSummary(**r) for r in rows], int(total[0]["n"])

    async def version(self, namespace: str, name: str, *, number: int | None = None,
                      label: str | None = None) -> VersionState | None:
        condition, value = (sql.SQL("v.number = %s"), number) if number is not None else (
            sql.SQL("v.label = %s"), label)
        found = await self._versions(
            sql.SQL("v.namespace = %s AND v.name = %s AND ") + condition, [namespace, name, value])
        return found[0] if found else None

    async def versions_page(self, namespace: str, name: str, *, stage: Stage | None,
                            after_number: int, limit: int) -> tuple[list[VersionState], int]:
        stage_filter = sql.SQL(" AND v.stage = %s") if stage else sql.SQL("")
        params: list[Any] = [namespace, name, *([stage.value] if stage else [])]
        # The count and the page at once, on two connections: one round trip, not two.
        total, page = await asyncio.gather(
            self._rows(sql.SQL("SELECT count(*) AS n FROM vh_versions v WHERE v.namespace = %s"
                               " AND v.name = %s") + stage_filter, params),
            self._versions(sql.SQL("v.namespace = %s AND v.name = %s") + stage_filter
                           + sql.SQL(" AND v.number > %s ORDER BY v.number LIMIT %s"),
                           [*params, after_number, limit]))
        return page, int(total[0]["n"])

    async def versions_by_key(self, keys: Iterable[VersionKey]) -> dict[VersionKey, VersionState]:
        wanted = sorted(set(keys), key=lambda k: (k.namespace, k.name, k.number))
        if not wanted:
            return {}
        found = await self._versions(
            sql.SQL("(v.namespace, v.name, v.number) IN (SELECT * FROM unnest("
                    "%s::text[], %s::text[], %s::int[]))"),
            [[k.namespace for k in wanted], [k.name for k in wanted], [k.number for k in wanted]])
        return {v.key: v for v in found}

    async def children(self, keys: Sequence[VersionKey]) -> dict[VersionKey, list[VersionKey]]:
        rows = await self._rows(
            sql.SQL("SELECT parent_namespace, parent_name, parent_number, child_namespace,"
                    " child_name, child_number FROM vh_lineage WHERE (parent_namespace,"
                    " parent_name, parent_number) IN (SELECT * FROM unnest(%s::text[],"
                    " %s::text[], %s::int[])) ORDER BY position"),
            [[k.namespace for k in keys], [k.name for k in keys], [k.number for k in keys]])
        found: dict[VersionKey, list[VersionKey]] = defaultdict(list)
        for r in rows:
            parent = VersionKey(r["parent_namespace"], r["parent_name"], r["parent_number"])
            found[parent].append(
                VersionKey(r["child_namespace"], r["child_name"], r["child_number"]))
        return found

    async def lineage(self, root: VersionKey, *, upstream: bool, depth: int
                      ) -> list[tuple[VersionKey, VersionKey]]:
        """(parent, child) edges reachable from ``root`` within ``depth`` steps, walked by
        one recursive query. Cycles cannot occur: a version's parents exist before it."""
        near, far = ("child", "parent") if upstream else ("parent", "child")
        rows = await self._rows(sql.SQL(
            "WITH RECURSIVE walk AS ("
            " SELECT l.*, 1 AS depth FROM vh_lineage l WHERE (l.{near}_namespace,"
            " l.{near}_name, l.{near}_number) = (%s, %s, %s)"
            " UNION"
            " SELECT l.*, w.depth + 1 FROM vh_lineage l JOIN walk w ON"
            " (l.{near}_namespace, l.{near}_name, l.{near}_number) ="
            " (w.{far}_namespace, w.{far}_name, w.{far}_number) WHERE w.depth < %s)"
            " SELECT DISTINCT parent_namespace, parent_name, parent_number, child_namespace,"
            " child_name, child_number FROM walk ORDER BY 1, 2, 3, 4, 5, 6").format(
                near=sql.SQL(near), far=sql.SQL(far)),
            (root.namespace, root.name, root.number, depth))
        return [(VersionKey(r["parent_namespace"], r["parent_name"], r["parent_number"]),
                 VersionKey(r["child_namespace"], r["child_name"], r["child_number"]))
                for r in rows]

    async def impact(self, root: VersionKey, *, depth: int) -> list[VersionKey]:
        """PRODUCTION versions downstream of ``root`` (what a bad ``root`` would reach)."""
        rows = await self._rows(sql.SQL(
            "WITH RECURSIVE down AS ("
            " SELECT child_namespace AS ns, child_name AS n, child_number AS v, 1 AS depth"
            " FROM vh_lineage WHERE (parent_namespace, parent_name, parent_number) ="
            " (%s, %s, %s)"
            " UNION"
            " SELECT l.child_namespace, l.child_name, l.child_number, d.depth + 1"
            " FROM vh_lineage l JOIN down d ON (l.parent_namespace, l.parent_name,"
            " l.parent_number) = (d.ns, d.n, d.v) WHERE d.depth < %s)"
            " SELECT DISTINCT d.ns, d.n, d.v FROM down d JOIN vh_versions v ON"
            " (v.namespace, v.name, v.number) = (d.ns, d.n, d.v) WHERE v.stage = 'PRODUCTION'"
            " ORDER BY 1, 2, 3"), (root.namespace, root.name, root.number, depth))
        return [VersionKey(r["ns"], r["n"], r["v"]) for r in rows]

    async def promotions(self, namespace: str, name: str) -> list[PromotionRecord]:
        rows = await self._rows(
            sql.SQL("SELECT namespace, name, number, previous, reason, actor, at, position"
                    " FROM vh_promotions WHERE namespace = %s AND name = %s ORDER BY position"),
            (namespace, name))
        return [PromotionRecord(**r) for r in rows]

    async def position(self, namespace: str, name: str) -> int:
        """How far the read model has applied this artifact's events (0: not at all)."""
        summary = await self.artifact(namespace, name)
        return summary.position if summary else 0

    async def _versions(self, condition: sql.Composable, params: Sequence[Any]
                        ) -> list[VersionState]:
        rows = await self._rows(
            sql.SQL("SELECT {}, coalesce((SELECT array_agg(ARRAY[l.parent_namespace,"
                    " l.parent_name, l.parent_number::text] ORDER BY l.parent_namespace,"
                    " l.parent_name, l.parent_number) FROM vh_lineage l"
                    " WHERE l.child_namespace = v.namespace AND l.child_name = v.name"
                    " AND l.child_number = v.number), '{{}}') AS parents"
                    " FROM vh_versions v WHERE ").format(VERSION_COLUMNS) + condition, params,
            row_factory=tuple_row)
        return [_version(r) for r in rows]

    async def _rows(self, query: sql.Composable, params: Sequence[Any],
                    row_factory: Any = dict_row) -> list[Any]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=row_factory) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()


def _version(row: tuple[Any, ...]) -> VersionState:
    """A row of VERSION_COLUMNS plus parents, positionally (a page holds up to 1,000: keyword
    construction from dict rows was a measurable part of reading one)."""
    (namespace, name, number, label, stage, digest, size, media_type, content_type, metadata,
     producer, created_at, position, purged, parents) = row
    return VersionState(namespace, name, number, label, Stage(stage), digest, size, media_type,
                        content_type, metadata,
                        tuple([VersionKey(p[0], p[1], int(p[2])) for p in parents]),
                        producer, created_at, position, purged)


def _artifact_conditions(where: ArtifactFilter) -> tuple[sql.Composed, list[Any]]:
    parts: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if not where.include_archived:
        parts.append(sql.SQL("NOT a.archived"))
    if where.namespace is not None:
        parts.append(sql.SQL("a.namespace = %s"))
        params.append(where.namespace)
    if where.readable is not None:
        parts.append(sql.SQL("a.namespace = ANY(%s)"))
        params.append(sorted(where.readable))
    if where.kind is not None:
        parts.append(sql.SQL("a.kind = %s"))
        params.append(where.kind)
    if where.name_prefix:
        parts.append(sql.SQL("starts_with(a.name, %s)"))
        params.append(where.name_prefix)
    if where.stage is not None:  # artifacts with a version in that stage
        parts.append(sql.SQL("EXISTS (SELECT 1 FROM vh_versions v WHERE v.namespace ="
                             " a.namespace AND v.name = a.name AND v.stage = %s)"))
        params.append(where.stage.value)
    if where.metadata:  # the latest version's metadata contains the given object
        parts.append(sql.SQL("EXISTS (SELECT 1 FROM vh_versions v WHERE v.namespace ="
                             " a.namespace AND v.name = a.name AND v.number = a.latest_number"
                             " AND v.metadata @> %s)"))
        params.append(Jsonb(where.metadata))
    return sql.Composed([sql.SQL(" AND ").join(parts)]), params
