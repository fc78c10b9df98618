"""Recent activity from the event log: the latest ingests and promotions, and ingests per
minute, optionally limited to some namespaces (what a namespace-limited token may see)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

# Newest first by position: a backward walk of the primary key that stops at `limit` rows
# (ingests are most of the log, so it stops early).
RECENT_INGESTS = """
    SELECT position, type, namespace, name, (payload->>'number')::int AS number,
           payload->>'label' AS label, NULL::int AS previous, NULL AS reason,
           coalesce(metadata->>'actor', payload->>'producer') AS actor, recorded_at AS at
    FROM events
    WHERE type = 'VersionIngested' AND (%(namespaces)s::text[] IS NULL
                                       OR namespace = ANY(%(namespaces)s::text[]))
    ORDER BY position DESC LIMIT %(limit)s
"""

# Promotions are rare in the log, where the same walk could read all of it: the read model
# keeps them in a table of their own, keyed by position.
RECENT_PROMOTIONS = """
    SELECT p.position, 'VersionPromoted' AS type, p.namespace, p.name, p.number,
           v.label, p.previous, p.reason, p.actor, p.at
    FROM vh_promotions p LEFT JOIN vh_versions v
         ON (v.namespace, v.name, v.number) = (p.namespace, p.name, p.number)
    WHERE %(namespaces)s::text[] IS NULL OR p.namespace = ANY(%(namespaces)s::text[])
    ORDER BY p.position DESC LIMIT %(limit)s
"""

# One row per minute of the window, zero-filled. The events table has no index on
# recorded_at (one would tax every append), so the scan starts above the log head that a lag
# sample saw well before the window: positions are handed out in time order, so no event
# recorded inside the window lies at or below it. Five minutes of margin cover a sample that
# took long to measure. Without such a sample (a young system) the scan starts at 0.
PER_MINUTE = """
    WITH bins AS (
        SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => %(m)s - 1),
                               date_trunc('minute', now()), interval '1 minute') AS minute
    ), floor AS (
        SELECT coalesce((SELECT min(head) FROM ops_lag_samples WHERE sampled_at = (
            SELECT max(sampled_at) FROM ops_lag_samples
            WHERE sampled_at <= (SELECT min(minute) FROM bins) - interval '5 minutes')), 0)
            AS position
    ), counts AS (
        SELECT date_trunc('minute', recorded_at) AS minute, count(*) AS n FROM events
        WHERE position > (SELECT position FROM floor) AND type = 'VersionIngested'
          AND recorded_at >= (SELECT min(minute) FROM bins)
          AND (%(namespaces)s::text[] IS NULL OR namespace = ANY(%(namespaces)s::text[]))
        GROUP BY 1
    )
    SELECT b.minute, coalesce(c.n, 0) AS n FROM bins b LEFT JOIN counts c USING (minute)
    ORDER BY b.minute
"""


@dataclass(frozen=True)
class Activity:
    """One ingest or promotion as the log recorded it."""

    position: int
    type: str
    namespace: str
    name: str
    number: int | None
    label: str | None
    previous: int | None
    reason: str | None
    actor: str | None
    at: datetime


class ActivityReader:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def recent_ingests(self, *, limit: int,
                             namespaces: Collection[str] | None = None) -> list[Activity]:
        """The latest ``limit`` ingests, newest first."""
        return await self._activity(RECENT_INGESTS, limit, namespaces)

    async def recent_promotions(self, *, limit: int,
                                namespaces: Collection[str] | None = None) -> list[Activity]:
        """The latest ``limit`` promotions, newest first (as the read model has applied them)."""
        return await self._activity(RECENT_PROMOTIONS, limit, namespaces)

    async def ingests_per_minute(self, minutes: int, *,
                                 namespaces: Collection[str] | None = None
                                 ) -> list[tuple[datetime, int]]:
        """(minute, ingests) for each of the last ``minutes`` minutes, the current one last."""
        rows = await self._rows(PER_MINUTE, {"m": minutes,
                                             "namespaces": _chosen(namespaces)})
        return [(row["minute"], int(row["n"])) for row in rows]

    async def _activity(self, query: str, limit: int, namespaces: Collection[str] | None
                        ) -> list[Activity]:
        rows = await self._rows(query, {"limit": limit, "namespaces": _chosen(namespaces)})
        return [Activity(**row) for row in rows]

    async def _rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()


def _chosen(namespaces: Collection[str] | None) -> list[str] | None:
    return None if namespaces is None else sorted(namespaces)
