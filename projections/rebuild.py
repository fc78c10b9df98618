"""Rebuild a projection from the Postgres event log (the system of record).

The rebuild holds the projection's maintenance lock, so live workers finish their in-flight
batch and then wait; afterwards they skip everything up to the rebuilt checkpoints. A shadow
rebuild (projections/shadow.py) builds new tables while the live ones keep serving and holds
the lock only to catch up and switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass

from psycopg import AsyncConnection

from core.errors import NotFound, ValidationError
from core.eventlog_pg import PostgresEventStore
from core.events import RecordedEvent
from core.jetstream import partition_of
from core.settings import Settings
from core.tasks import gather_or_cancel
from projections.analytics import TABLES as ANALYTICS_TABLES
from projections.analytics import AnalyticsProjection
from projections.base import Artifact, Projection
from projections.leases import PartitionLeases
from projections.shadow import ClickHouseShadow, PostgresShadow, ShadowTarget, shadow_rebuild
from projections.version_history import TABLES as VH_TABLES
from projections.version_history import VersionHistoryProjection

# Events per page read from the log: ~2,500 per partition and apply with 4 partitions, as the
# analytics projection pays per insert, not per row; two pages in memory at most.
READ_BATCH = 10_000


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def rebuild(projection: Projection, store: PostgresEventStore, settings: Settings, *,
                  from_position: int | None = None) -> RebuildResult:
    """Reset and re-apply. With ``from_position``, only the artifacts that have events after
    it are reset and replayed (whole, so their stages come out right)."""
    assert settings.database_url
    leases = PartitionLeases(settings.database_url, projection.name, settings.partitions)
    started = time.monotonic()
    async with await AsyncConnection.connect(settings.database_url, autocommit=True) as lock:
        await lock.execute("SELECT pg_advisory_lock(%s, 0)", (leases.maintenance_key,))
        artifacts = None if from_position is None else await changed_since(store, from_position)
        await projection.reset(artifacts)
        applied = await replay(projection, store, settings, artifacts)
        await lock.execute("SELECT pg_advisory_unlock(%s, 0)", (leases.maintenance_key,))
    return RebuildResult(projection.name, applied, time.monotonic() - started)


async def changed_since(store: PostgresEventStore, position: int) -> set[Artifact]:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT DISTINCT namespace, name FROM events WHERE position > %s", (position,))
        return {(row[0], row[1]) for row in await cur.fetchall()}


async def replay(projection: Projection, store: PostgresEventStore, settings: Settings,
                 artifacts: set[Artifact] | None) -> int:
    applied, _ = await replay_after(projection, store, settings, artifacts, 0)
    return applied


async def replay_after(projection: Projection, store: PostgresEventStore, settings: Settings,
                       artifacts: set[Artifact] | None, position: int,
                       until: int | None = None) -> tuple[int, int]:
    """Apply the log after ``position`` (as a rebuild does), up to ``until`` if given (so a
    steady stream of ingests cannot keep it chasing the head); (events applied, last
    position)."""
    applied = 0
    # The next page is read while the current one is applied (as the relay does when
    # publishing): the read waits on Postgres and the apply on the projection's store.
    pending = asyncio.ensure_future(store.read_after(position, READ_BATCH))
    try:
        while batch := await pending:
            if until is not None:
                batch = [e for e in batch if e.position <= until]
                if not batch:
                    break
            position = batch[-1].position
            pending = asyncio.ensure_future(store.read_after(position, READ_BATCH))
            applied += await _apply_page(projection, settings, artifacts, batch)
    finally:
        # Never cancelled mid-query (that could hand the pool a connection in an unknown
        # state): a page read in vain is simply dropped.
        with contextlib.suppress(Exception):
            await pending
    return applied, position


async def _apply_page(projection: Projection, settings: Settings,
                      artifacts: set[Artifact] | None, batch: list[RecordedEvent]) -> int:
    chosen = [e for e in batch if artifacts is None or (e.namespace, e.name) in artifacts]
    by_partition: dict[int, list[RecordedEvent]] = defaultdict(list)
    for event in chosen:
        by_partition[partition_of(event.namespace, event.name, settings.partitions)].append(
            event)
    # Partitions are independent (the live worker applies them concurrently too): while one
    # partition's rows are written, the next one's are derived.
    await gather_or_cancel(*(projection.apply(partition, events, replaying=True)
                             for partition, events in sorted(by_partition.items())))
    return len(chosen)


async def rebuild_shadow(projection: Projection, store: PostgresEventStore,
                         settings: Settings) -> RebuildResult:
    """Rebuild into shadow tables while the live ones serve, then switch (projections.shadow)."""
    assert settings.database_url
    leases = PartitionLeases(settings.database_url, projection.name, settings.partitions)

    async def apply_log(shadow: Projection, after: int) -> tuple[int, int]:
        head = await store.head_position()
        applied, _ = await replay_after(shadow, store, settings, None, after, head)
        return applied, max(after, head)

    events, seconds = await shadow_rebuild(shadow_target(projection, settings), apply_log,
                                           leases, settings.database_url)
    return RebuildResult(projection.name, events, seconds)


def shadow_target(projection: Projection, settings: Settings) -> ShadowTarget:
    assert settings.database_url
    if isinstance(projection, VersionHistoryProjection):
        return PostgresShadow(settings.database_url, projection.name, VH_TABLES,
                              VersionHistoryProjection)
    if isinstance(projection, AnalyticsProjection):
        return ClickHouseShadow(projection.clickhouse, tuple(ANALYTICS_TABLES),
                                lambda clickhouse: AnalyticsProjection(clickhouse, settings))
    raise ValidationError(f"projection {projection.name!r} has no shadow rebuild")


class Rebuilder:
    """Rebuilds the projections this process knows, by name."""

    def __init__(self, projections: dict[str, Projection], store: PostgresEventStore,
                 settings: Settings) -> None:
        self.projections = projections
        self.store = store
        self.settings = settings

    async def rebuild(self, name: str, from_position: int | None = None, *,
                      shadow: bool = False) -> RebuildResult:
        """In place (pausing the live workers), or into shadow tables while the live ones
        keep serving (``shadow``: always the whole log)."""
        projection = self.projections.get(name)
        if projection is None:
            raise NotFound(f"no projection named {name!r}; known: "
                           f"{', '.join(sorted(self.projections))}")
        if from_position is not None and from_position < 0:
            raise ValidationError("fromPosition must not be negative")
        if shadow:
            if from_position is not None:
                raise ValidationError("a shadow rebuild replays the whole log: drop "
                                      "fromPosition")
            return await rebuild_shadow(projection, self.store, self.settings)
        return await rebuild(projection, self.store, self.settings, from_position=from_position)
