"""What every scenario gets: sizes for the mode, the run count, the suite's own engines, the
shared `artifactlog up` server, and the list the metrics go into."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from bench.common import Goal, Metric
from bench.server import Server
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.jetstream import connect
from core.services import ArtifactService
from core.settings import Settings

T = TypeVar("T")


@dataclass
class Local:
    """In-process access to the suite's own engines (for relay, projections and diff)."""

    settings: Settings
    pool: AsyncConnectionPool
    nats: NatsClient
    js: JetStreamContext
    store: PostgresEventStore
    service: ArtifactService


@dataclass
class Bench:
    quick: bool
    home: Path
    engines: Settings  # the suite's own embedded engines, every URL set (Stack.start)
    runs: int
    warmups: int = 1
    overrides: dict[str, int] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    _server: Server | None = None
    _server_error: Exception | None = None

    def size(self, scenario: str, name: str, quick: int, full: int) -> int:
        """A workload size for this mode; ``--size scenario.name=N`` overrides it."""
        value = self.overrides.get(f"{scenario}.{name}", quick if self.quick else full)
        self.sizes.setdefault(scenario, {})[name] = value
        return value

    def add(self, scenario: str, name: str, unit: str, samples: list[float], *,
            goal: Goal | None = None, baseline: Metric | None = None, note: str = ""
            ) -> Metric:
        metric = Metric(scenario, name, unit, samples, goal, baseline, note)
        self.metrics.append(metric)
        print(f"  {name:<58} {metric.median:>12,.2f} {unit}", flush=True)
        return metric

    async def repeat(self, once: Callable[[bool], Awaitable[T]]) -> list[T]:
        """``once(warmup)`` for the warm-ups (results dropped), then ``runs`` times."""
        for _ in range(self.warmups):
            await once(True)
        return [await once(False) for _ in range(self.runs)]

    async def server(self) -> Server:
        """The one `artifactlog up` the HTTP scenarios share, started on first use (after the
        in-process scenarios, so it does not compete with them for the CPU)."""
        if self._server_error is not None:
            raise self._server_error  # failed once: the next scenarios fail fast, alike
        if self._server is None:
            server = Server(self.home / "server")
            try:
                await asyncio.to_thread(server.start)
            except Exception as exc:
                self._server_error = exc
                raise
            self._server = server
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @asynccontextmanager
    async def local(self, **overrides: Any) -> AsyncIterator[Local]:
        settings = self.engines.with_overrides(**overrides)
        assert settings.database_url
        assert settings.nats_url
        pool = await open_pool(settings.database_url, max_size=20)
        nc = await connect(settings.nats_url, name="bench")
        try:
            store = PostgresEventStore(pool)
            yield Local(settings, pool, nc, nc.jetstream(), store,
                        ArtifactService(store, max_content_bytes=settings.max_content_bytes))
        finally:
            await nc.close()
            await pool.close()
