"""How far each projection has got: its position, the log head, and the lag behind it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool

from core.jetstream import JetStreamPublisher
from core.settings import Settings
from projections.base import Projection


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int  # every event at or below it is applied
    head: int
    lag: int  # events in the log above position
    lag_seconds: float | None  # age of the oldest event not yet applied
    parked: int


async def projection_status(projection: Projection, pool: AsyncConnectionPool,
                            js: JetStreamContext, settings: Settings) -> ProjectionStatus:
    tail = await JetStreamPublisher(js, settings).tail()
    published = tail.position if tail else 0
    # A partition whose consumer has nothing pending has seen everything published so far,
    # even if its own last event is old; otherwise it stands at its checkpoint.
    marks = []
    for partition in range(settings.partitions):
        checkpoint = await projection.checkpoint(partition)
        caught_up = False
        with contextlib.suppress(NotFoundError):
            info = await js.consumer_info(settings.stream_name,
                                          f"{projection.name}-p{partition}")
            caught_up = info.num_pending == 0 and info.num_ack_pending == 0
        marks.append(max(checkpoint, published) if caught_up else checkpoint)
    position = min(marks) if marks else 0
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT coalesce(max(position), 0) FROM events),"
            " (SELECT count(*) FROM events WHERE position > %s),"
            " (SELECT min(recorded_at) FROM events WHERE position > %s),"
            " (SELECT count(*) FROM projection_parked WHERE projection = %s)",
            (position, position, projection.name))
        row = await cur.fetchone()
    assert row is not None
    head, lag, oldest, parked = row
    lag_seconds = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    return ProjectionStatus(projection.name, min(position, head), head, lag, lag_seconds,
                            parked)


class StatusQueries:
    """The status of every projection this deployment runs."""

    def __init__(self, projections: list[Projection], pool: AsyncConnectionPool,
                 js: JetStreamContext, settings: Settings) -> None:
        self.projections = projections
        self.pool = pool
        self.js = js
        self.settings = settings

    async def projections_status(self) -> list[ProjectionStatus]:
        return [await projection_status(p, self.pool, self.js, self.settings)
                for p in self.projections]
