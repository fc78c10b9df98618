"""Rebuild a projection from the Postgres event log (the system of record).

The rebuild holds the projection's maintenance lock, so live workers finish their in-flight
batch and then wait; afterwards they skip everything up to the rebuilt checkpoints.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from psycopg import AsyncConnection

from core.errors import NotFound, ValidationError
from core.eventlog_pg import PostgresEventStore
from core.events import RecordedEvent
from core.jetstream import partition_of
from core.settings import Settings
from projections.base import Artifact, Projection
from projections.leases import PartitionLeases

READ_BATCH = 5000


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
    position = applied = 0
    while batch := await store.read_after(position, READ_BATCH):
        position = batch[-1].position
        chosen = [e for e in batch if artifacts is None or (e.namespace, e.name) in artifacts]
        by_partition: dict[int, list[RecordedEvent]] = defaultdict(list)
        for event in chosen:
            by_partition[partition_of(event.namespace, event.name, settings.partitions)].append(
                event)
        for partition, events in sorted(by_partition.items()):
            await projection.apply(partition, events, replaying=True)
        applied += len(chosen)
    return applied


class Rebuilder:
    """Rebuilds the projections this process knows, by name."""

    def __init__(self, projections: dict[str, Projection], store: PostgresEventStore,
                 settings: Settings) -> None:
        self.projections = projections
        self.store = store
        self.settings = settings

    async def rebuild(self, name: str, from_position: int | None = None) -> RebuildResult:
        projection = self.projections.get(name)
        if projection is None:
            raise NotFound(f"no projection named {name!r}; known: "
                           f"{', '.join(sorted(self.projections))}")
        if from_position is not None and from_position < 0:
            raise ValidationError("fromPosition must not be negative")
        return await rebuild(projection, self.store, self.settings, from_position=from_position)
