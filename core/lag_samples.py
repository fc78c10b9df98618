"""Projection lag over time: sampled every few seconds into ``ops_lag_samples``, kept for a
day, read back as series for the dashboard's last-hour chart.

Lag at one moment is what ``status`` shows; a chart needs its history, and nothing else keeps
it (Prometheus may not be there). Every API replica runs a sampler: a sample time is the
database clock rounded down to the step, so replicas sampling in the same step write the same
keys, the first insert wins and the others change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("artifactlog.lag_samples")

SAMPLE_SECONDS = 15
KEEP = timedelta(days=1)
PRUNE_EVERY = 40  # samples: about every ten minutes at the default step

# The current sample time, from the database clock (the one recorded_at uses), so replicas
# with skewed clocks still agree on the key.
SLOT = "to_timestamp(floor(extract(epoch FROM now()) / %(step)s) * %(step)s)"


class LagReading(Protocol):
    """One projection's lag as measured now (projections.status.ProjectionStatus is one)."""

    @property
    def name(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def head(self) -> int: ...
    @property
    def lag(self) -> int: ...
    @property
    def lag_seconds(self) -> float | None: ...
    @property
    def parked(self) -> int: ...


@dataclass(frozen=True)
class LagSample:
    sampled_at: datetime
    projection: str
    lag_events: int
    lag_seconds: float | None


class LagSamples:
    """The ``ops_lag_samples`` table."""

    def __init__(self, pool: AsyncConnectionPool, *, step_seconds: int = SAMPLE_SECONDS) -> None:
        self.pool = pool
        self.step_seconds = step_seconds

    async def slot_taken(self) -> bool:
        """Whether some replica already sampled in the current step."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM ops_lag_samples WHERE sampled_at = {SLOT})",
                {"step": self.step_seconds})
            row = await cur.fetchone()
        return bool(row and row[0])

    async def record(self, readings: Sequence[LagReading]) -> int:
        """Store one row per projection at the current sample time; the rows inserted (0 when
        another replica got there first)."""
        if not readings:
            return 0
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(
                f"INSERT INTO ops_lag_samples (sampled_at, projection, position, head,"
                f" lag_events, lag_seconds, parked) SELECT {SLOT}, * FROM unnest("
                " %(names)s::text[], %(positions)s::bigint[], %(heads)s::bigint[],"
                " %(lags)s::bigint[], %(seconds)s::float8[], %(parked)s::bigint[])"
                " ON CONFLICT DO NOTHING",
                {"step": self.step_seconds, "names": [r.name for r in readings],
                 "positions": [r.position for r in readings],
                 "heads": [r.head for r in readings],
                 "lags": [max(r.lag, 0) for r in readings],
                 "seconds": [r.lag_seconds for r in readings],
                 "parked": [r.parked for r in readings]})
            return cur.rowcount

    async def prune(self, keep: timedelta = KEEP) -> int:
        """Delete samples older than ``keep``; the rows deleted."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM ops_lag_samples WHERE sampled_at < now() - %s", (keep,))
            return cur.rowcount

    async def series(self, minutes: int) -> list[LagSample]:
        """Every sample of the last ``minutes``, oldest first."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT sampled_at, projection, lag_events, lag_seconds FROM ops_lag_samples"
                " WHERE sampled_at >= now() - make_interval(mins => %s)"
                " ORDER BY sampled_at, projection", (minutes,))
            return [LagSample(**row) for row in await cur.fetchall()]


class LagSampler:
    """Samples every projection's lag each step until stopped; prunes old samples now and
    then. A failed sample is a gap in a chart, never a reason to stop the process it runs
    in, so errors are logged and the next step tries again."""

    def __init__(self, samples: LagSamples,
                 measure: Callable[[], Awaitable[Sequence[LagReading]]], *,
                 keep: timedelta = KEEP, prune_every: int = PRUNE_EVERY) -> None:
        self.samples = samples
        self.measure = measure
        self.keep = keep
        self.prune_every = prune_every

    async def sample_once(self) -> int:
        """Measure and record, unless another replica sampled this step; rows written."""
        if await self.samples.slot_taken():
            return 0  # measuring costs consumer-info calls: skip what would be discarded
        return await self.samples.record(await self.measure())

    async def run(self, stop: asyncio.Event) -> None:
        step = self.samples.step_seconds
        taken = 0
        while not stop.is_set():
            try:
                await self.sample_once()
                if taken % self.prune_every == 0:
                    await self.samples.prune(self.keep)
            except Exception as exc:  # any failure: see the class docstring
                log.warning("lag sample failed (the chart will show a gap): %r", exc)
            taken += 1
            # Sleep to a little past the next step boundary: one sample per step, evenly spaced.
            pause = step - time.time() % step + 0.5
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
