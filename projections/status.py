"""How far each projection has got: its position, the log head, the lag behind it, and
whether that lag crosses the projection's alert thresholds.

Every figure is computed from shared state (Postgres, the projection's checkpoint store,
JetStream consumer info), so any process gives the same answer. NATS calls are bounded by
``probe_timeout_seconds``: with NATS down the status still answers, from checkpoints alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool

from core.errors import ValidationError
from core.jetstream import JetStreamPublisher
from core.settings import Settings
from projections.base import Projection

OK = "OK"
ALERT = "ALERT"


@dataclass(frozen=True)
class LagThresholds:
    events: int
    seconds: float


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int  # every event at or below it is applied
    head: int
    lag: int  # events in the log above position
    lag_seconds: float | None  # age of the oldest event not yet applied
    parked: int
    thresholds: LagThresholds | None = None

    @property
    def alert_reason(self) -> str | None:
        """Why the projection is in ALERT, or None when it is not."""
        limits = self.thresholds
        if limits is None:
            return None
        reasons = []
        if self.lag > limits.events:
            reasons.append(f"lag {self.lag} events > {limits.events}")
        if self.lag_seconds is not None and self.lag_seconds > limits.seconds:
            reasons.append(f"lag {self.lag_seconds:.1f}s > {limits.seconds:g}s")
        return "; ".join(reasons) or None

    @property
    def state(self) -> str:
        return ALERT if self.alert_reason else OK


def lag_thresholds(settings: Settings) -> dict[str, LagThresholds]:
    """Per-projection overrides from ``lag_alert_overrides`` ("NAME.events=N,NAME.seconds=S");
    projections not named there use the defaults (``thresholds_for``)."""
    found: dict[str, dict[str, float]] = {}
    for item in filter(None, (part.strip() for part in settings.lag_alert_overrides.split(","))):
        key, sep, value = item.partition("=")
        name, dot, limit = key.strip().rpartition(".")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not (sep and dot and name and limit in ("events", "seconds") and number >= 0):
            raise ValidationError(f"ARTIFACTLOG_LAG_ALERT_OVERRIDES: {item!r} is not "
                                  "PROJECTION.events=N or PROJECTION.seconds=S")
        found.setdefault(name, {})[limit] = number
    return {name: LagThresholds(int(v.get("events", settings.lag_alert_events)),
                                v.get("seconds", settings.lag_alert_seconds))
            for name, v in found.items()}


def thresholds_for(name: str, settings: Settings,
                   overrides: dict[str, LagThresholds] | None = None) -> LagThresholds:
    table = lag_thresholds(settings) if overrides is None else overrides
    return table.get(name, LagThresholds(settings.lag_alert_events, settings.lag_alert_seconds))


async def published_position(js: JetStreamContext, settings: Settings) -> int | None:
    """The position of the last event on the stream; None when NATS does not answer in time."""
    try:
        tail = await asyncio.wait_for(JetStreamPublisher(js, settings).tail(),
                                      settings.probe_timeout_seconds)
    except Exception:  # NATS down or slow: the status is reported from checkpoints alone
        return None
    return tail.position if tail else 0


async def projection_status(projection: Projection, pool: AsyncConnectionPool,
                            js: JetStreamContext, settings: Settings, *,
                            thresholds: LagThresholds | None = None,
                            published: int | None = -1) -> ProjectionStatus:
    if published == -1:
        published = await published_position(js, settings)
    # A partition whose consumer has nothing pending has seen everything published so far,
    # even if its own last event is old; otherwise it stands at its checkpoint.
    marks = []
    for partition in range(settings.partitions):
        checkpoint = await projection.checkpoint(partition)
        caught_up = False
        if published is not None:  # NATS answered a moment ago
            with contextlib.suppress(NotFoundError, TimeoutError):
                info = await asyncio.wait_for(js.consumer_info(
                    settings.stream_name, f"{projection.name}-p{partition}"),
                    settings.probe_timeout_seconds)
                caught_up = info.num_pending == 0 and info.num_ack_pending == 0
        marks.append(max(checkpoint, published or 0) if caught_up else checkpoint)
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
                            parked, thresholds or thresholds_for(projection.name, settings))


class StatusQueries:
    """The status of every projection this deployment runs."""

    def __init__(self, projections: list[Projection], pool: AsyncConnectionPool,
                 js: JetStreamContext, settings: Settings) -> None:
        self.projections = projections
        self.pool = pool
        self.js = js
        self.settings = settings
        self.thresholds = lag_thresholds(settings)  # a bad setting fails at start

    async def wait_caught_up(self, seconds: float) -> bool:
        """Wait until every projection has applied the log up to its head as of now;
        False if one has not within ``seconds``."""
        deadline = time.monotonic() + seconds
        statuses = await self.projections_status()
        head = max((s.head for s in statuses), default=0)
        while any(s.position < head for s in statuses):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
            statuses = await self.projections_status()
        return True

    async def projections_status(self) -> list[ProjectionStatus]:
        published = await published_position(self.js, self.settings)
        return [await projection_status(
            p, self.pool, self.js, self.settings, published=published,
            thresholds=thresholds_for(p.name, self.settings, self.thresholds))
            for p in self.projections]
