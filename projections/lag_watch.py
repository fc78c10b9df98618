"""Logs a projection's lag alert when it is raised and when it clears: once per transition.

The status itself (GraphQL, the CLI, /metrics) is computed on demand from shared state and
needs no watcher; only the log lines need one process to remember the last state. The API
process runs this (every deployment runs one, and it can read every projection's
checkpoint, ClickHouse's included). With several API replicas, the one holding a
session-level Postgres advisory lock watches; if it dies its connection closes, the lock is
released, and another replica takes over and announces the alerts in force as it finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from typing import Any

import psycopg
from psycopg import AsyncConnection

from projections.status import ALERT, OK, ProjectionStatus, StatusQueries

log = logging.getLogger("artifactlog.lag")

LOCK_KEY = zlib.crc32(b"artifactlog:lag-watch") & 0x7FFFFFFF


class LagWatch:
    def __init__(self, status: StatusQueries, *, interval: float) -> None:
        self.status = status
        self.interval = interval
        self.states: dict[str, str] = {}
        self._leader: AsyncConnection[Any] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``interval`` until ``stop`` is set; outages only delay a check."""
        try:
            while not stop.is_set():
                try:
                    if await self.lead():
                        await self.check()
                except Exception as exc:  # Postgres or NATS away: try again next round
                    log.warning("lag watch could not check: %r", exc)
                    await self.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await self.close()

    async def lead(self) -> bool:
        """True while this process holds the watch's advisory lock."""
        if self._leader is None or self._leader.closed:
            self._leader = None
            conn = await AsyncConnection.connect(self.status.pool.conninfo, autocommit=True)
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            row = await cur.fetchone()
            if not (row and row[0]):
                await conn.close()
                # Another replica announces transitions now; should this one take over
                # later, it starts from what it finds then.
                self.states.clear()
                return False
            self._leader = conn
        await self._leader.execute("SELECT 1")  # a lost connection means a lost lock
        return True

    async def check(self) -> list[ProjectionStatus]:
        """Evaluate every projection; log the ones whose state changed. Returns them."""
        changed = []
        for status in await self.status.projections_status():
            before = self.states.get(status.name, OK)
            self.states[status.name] = status.state
            if status.state == before:
                continue
            changed.append(status)
            fields = {"projection": status.name, "lag_events": status.lag,
                      "lag_seconds": round(status.lag_seconds or 0.0, 3),
                      "lag_state": status.state}
            if status.state == ALERT:
                log.warning("lag alert raised: projection %s: %s", status.name,
                            status.alert_reason, extra={**fields, "reason": status.alert_reason})
            else:
                log.info("lag alert cleared: projection %s is back within its thresholds "
                         "(lag %s events, %.1fs)", status.name, status.lag,
                         status.lag_seconds or 0.0, extra=fields)
        return changed

    async def close(self) -> None:
        """Give up the watch (the lock goes with the connection)."""
        if self._leader is not None:
            with contextlib.suppress(psycopg.Error):
                await self._leader.close()
            self._leader = None
