"""Composition root: wires the adapters, services, relay, projection workers and HTTP server
for one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

import uvicorn
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from api import roles
from api.app import create_app
from api.context import Services
from api.metrics import ingest_context
from api.roles import stop_on_signals
from api.workers import WorkerProcesses, WorkerRole
from core.activity_pg import ActivityReader
from core.analytics_sql import ReadOnlySql
from core.auth import TokenService
from core.clickhouse import ClickHouse
from core.comparison import DiffService
from core.db import open_pool
from core.feed import EventFeed
from core.history import HistoryQueries
from core.history_pg import HistoryReader
from core.ingest_nats import NatsIngestWorker
from core.jetstream import connect, ensure_stream
from core.lag_samples import LagSampler, LagSamples
from core.relay import Relay
from core.retention import Retention
from core.retention_pg import RetentionStore
from core.services import ArtifactService
from core.settings import Settings
from core.webhooks_pg import WebhookStore
from core.webhooks_service import WebhookService
from core.webhooks_worker import WebhookDispatcher
from projections.base import Projection
from projections.lag_watch import LagWatch
from projections.rebuild import Rebuilder
from projections.runner import ProjectionWorker
from projections.status import StatusQueries

log = logging.getLogger("artifactlog.server")

# chDB lets one process open its data directory: in embedded mode that is the API process,
# which runs the analytics projection and answers analytics queries. A role that does not
# serve analytics never opens ClickHouse.
ANALYTICS_ROLES = ("api", "projection-analytics")


# A websocket carries subscription documents, small: uvicorn's default 16 MiB message would
# be read whole before strawberry sees it (a bigger one is closed with 1009).
WS_MAX_MESSAGE_BYTES = 1024 * 1024
# How long a stop waits for open connections (a subscription follows the log forever) before
# closing them; without it one stuck websocket holds SIGTERM off indefinitely.
GRACEFUL_SHUTDOWN_SECONDS = 5.0
# How long `up` waits for its worker processes before it reports ready anyway (with a warning).
WORKERS_READY_SECONDS = 60.0


class ApiServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals are ours (see stop_on_signals): uvicorn would re-raise them after shutdown,
        # killing the process before it stops the engines it started.
        yield


@dataclass
class Runtime:
    settings: Settings
    pool: AsyncConnectionPool
    nats: NatsClient
    services: Services
    projections: dict[str, Projection] = field(default_factory=dict)

    @property
    def service(self) -> ArtifactService:
        return self.services.artifacts

    def relay(self) -> Relay:
        return roles.relay(self.pool, self.nats, self.settings)

    def worker(self, name: str) -> ProjectionWorker:
        return roles.projection_worker(self.projections[name], self.pool, self.nats,
                                       self.settings)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, role: str) -> AsyncIterator[Runtime]:
    assert settings.database_url, "Stack.start() fills in the URLs"
    assert settings.nats_url, "Stack.start() fills in the URLs"
    pool = await open_pool(settings.database_url, max_size=20)
    try:
        nc = await connect(settings.nats_url, name=f"artifactlog-{role}")
        try:
            js = nc.jetstream()
            await ensure_stream(js, settings)
            projections: dict[str, Projection] = {
                "version_history": roles.projection("version_history", pool, settings)}
            analytics = None
            if role in ANALYTICS_ROLES:
                projections["analytics"] = roles.projection("analytics", pool, settings)
                analytics = ReadOnlySql(ClickHouse(settings.effective_clickhouse_url))
            services = build_services(pool, js, settings, projections, analytics)
            try:
                yield Runtime(settings, pool, nc, services, projections)
            finally:
                # Snapshot writes still running (background tasks) get a moment to land.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(services.artifacts.snapshots.drain(), 5)
                for projection in projections.values():
                    await projection.close()
                if analytics is not None:
                    await analytics.clickhouse.close()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
    finally:
        await pool.close()


def build_services(pool: AsyncConnectionPool, js: JetStreamContext, settings: Settings,
                   projections: dict[str, Projection],
                   analytics: ReadOnlySql | None = None) -> Services:
    artifacts = roles.artifact_service(pool, settings)
    store = artifacts.store
    return Services(
        artifacts=artifacts,
        history=HistoryQueries(HistoryReader(pool), artifacts,
                               read_wait_seconds=settings.read_wait_seconds),
        status=StatusQueries(list(projections.values()), pool, js, settings),
        rebuilder=Rebuilder(projections, store, settings),
        diffs=DiffService(artifacts),
        feed=EventFeed(store, js, settings),
        activity=ActivityReader(pool),
        lag_samples=LagSamples(pool),
        analytics=analytics,
        webhooks=WebhookService(WebhookStore(pool), store),
        retention=Retention(artifacts, RetentionStore(pool), store.contents))


async def serve(
    settings: Settings, *, with_relay: bool = True, with_webhooks: bool = True,
    projections: Collection[str] | None = None, with_ingest_worker: bool = True,
    worker_processes: Sequence[WorkerRole] = (),
    on_ready: Callable[[Runtime], Awaitable[None]] | None = None,
) -> None:
    """Serve the API until SIGINT or SIGTERM, running beside it in this process the relay,
    webhooks, the ``projections`` named (None: all) and the NATS ingest worker as asked, and
    ``worker_processes`` as supervised child processes (api/workers.py)."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with open_runtime(settings, role="api") as runtime:
        # Tables first (idempotent DDL): "ready" must mean status and SQL already answer.
        for projection in runtime.projections.values():
            await projection.setup()
        tasks = []
        workers = WorkerProcesses(settings, worker_processes)
        if worker_processes:
            tasks.append(asyncio.create_task(workers.run(stop), name="workers"))
        if with_relay:
            tasks.append(asyncio.create_task(runtime.relay().run(stop), name="relay"))
        if with_webhooks:
            # Webhooks follow the log as the relay does (one dispatcher leads at a time).
            tasks.append(asyncio.create_task(WebhookDispatcher(
                runtime.pool, runtime.service.store).run(stop), name="webhooks"))
            tasks.append(asyncio.create_task(
                roles.maintenance(runtime.service, runtime.pool, stop), name="retention"))
        inline = runtime.projections if projections is None else projections
        tasks += [asyncio.create_task(runtime.worker(name).run(stop), name=name)
                  for name in inline]
        if with_ingest_worker:
            tasks.append(asyncio.create_task(
                NatsIngestWorker(runtime.nats, runtime.service).run(stop), name="nats-ingest",
                context=ingest_context("nats")))
        # Lag alert raise/recovery log lines (one replica at a time: projections/lag_watch.py).
        tasks.append(asyncio.create_task(LagWatch(
            runtime.services.status, interval=settings.lag_watch_interval_seconds).run(stop),
            name="lag-watch"))
        # The dashboard's lag chart: the API process is the one every deployment runs, and
        # replicas sampling at once write each sample once (core/lag_samples.py).
        sampler = LagSampler(runtime.services.lag_samples,
                             runtime.services.status.projections_status)
        tasks.append(asyncio.create_task(sampler.run(stop), name="lag-sampler"))
        app = create_app(runtime.services, settings, TokenService(runtime.pool))
        # log_config=None: uvicorn's records go through core.logs (JSON, redacted) too.
        config = uvicorn.Config(app, host=settings.host, port=settings.port,
                                log_level="warning", lifespan="off", log_config=None,
                                ws_max_size=WS_MAX_MESSAGE_BYTES,
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        server = ApiServer(config)
        server_task = asyncio.create_task(server.serve(), name="http")
        # uvicorn reports readiness only as a flag
        while not server.started and not server_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if server_task.done():
            stop.set()
        else:
            if slow := await workers.wait_ready(WORKERS_READY_SECONDS):
                log.warning("worker processes not ready after %.0f s: %s", WORKERS_READY_SECONDS,
                            ", ".join(slow))
            if on_ready is not None:
                await on_ready(runtime)
        await asyncio.wait([asyncio.create_task(stop.wait()), server_task],
                           return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await asyncio.gather(server_task, *tasks, return_exceptions=True)
