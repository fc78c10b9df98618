"""The background roles, each runnable as a process of its own (`artifactlog run ROLE`), and
the pieces the API process shares with them when it runs them inline.

Lean on purpose: a worker process imports what its role uses and nothing of the HTTP API
(strawberry, starlette, Jinja2, chDB and pyarrow come with it). `artifactlog up` runs three
of these processes, and importing `api.server` alone takes ~130 MB of memory against ~45 MB
for a relay (measured with VmRSS after import).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from core.db import open_pool
from core.jetstream import connect, ensure_stream
from core.settings import Settings

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from psycopg_pool import AsyncConnectionPool

    from api.metrics import MeteredArtifactService
    from core.relay import Relay
    from projections.base import Projection
    from projections.runner import ProjectionWorker


def ready_line(role: str) -> str:
    """What `artifactlog run ROLE` prints on stdout once it is connected and working (the
    worker supervisor of `up` waits for it: api/workers.py)."""
    return f"artifactlog {role} ready"


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def artifact_service(pool: AsyncConnectionPool, settings: Settings) -> MeteredArtifactService:
    """The artifact service every process that ingests uses, wired to its adapters."""
    from api.metrics import MeteredArtifactService
    from core.content_store import content_store_for
    from core.eventlog_pg import PostgresEventStore
    from core.schema_registry import SchemaRegistry
    from core.snapshots_loader import SnapshotLoader
    from core.snapshots_pg import PostgresSnapshots
    from core.streams_pg import PostgresStreams

    store = PostgresEventStore(pool, content_store_for(settings, pool))
    return MeteredArtifactService(store, max_content_bytes=settings.max_content_bytes,
                                  schemas=SchemaRegistry(pool), streams=PostgresStreams(pool),
                                  snapshots=SnapshotLoader(store, PostgresSnapshots(pool)))


def relay(pool: AsyncConnectionPool, nats: NatsClient, settings: Settings) -> Relay:
    from core.jetstream import JetStreamPublisher
    from core.relay import Relay

    return Relay(pool, JetStreamPublisher(nats.jetstream(), settings),
                 batch_size=settings.relay_batch_size)


def projection(name: str, pool: AsyncConnectionPool, settings: Settings) -> Projection:
    if name == "analytics":
        from core.clickhouse import ClickHouse
        from projections.analytics import AnalyticsProjection

        return AnalyticsProjection(ClickHouse(settings.effective_clickhouse_url), settings)
    from projections.version_history import VersionHistoryProjection

    return VersionHistoryProjection(pool)


def projection_worker(projection: Projection, pool: AsyncConnectionPool, nats: NatsClient,
                      settings: Settings) -> ProjectionWorker:
    from projections.leases import PartitionLeases
    from projections.parking import ParkingLot
    from projections.runner import ProjectionWorker

    assert settings.database_url
    leases = PartitionLeases(settings.database_url, projection.name, settings.partitions)
    return ProjectionWorker(projection, nats.jetstream(), settings, leases, ParkingLot(pool))


async def maintenance(service: MeteredArtifactService, pool: AsyncConnectionPool,
                      stop: asyncio.Event) -> None:
    """Apply the retention policies hourly (also `artifactlog retention apply`)."""
    from core.retention import Retention
    from core.retention_pg import RetentionStore

    retention = Retention(service, RetentionStore(pool), service.store.contents)
    await retention.run_periodically(stop)


async def run_role(settings: Settings, role: str) -> None:
    """One background role as its own process: ``relay``, ``ingest`` (the NATS ingest
    subject's worker), ``webhooks`` (the webhook dispatcher), ``capture`` (Parquet files) or
    ``projection:NAME``."""
    assert settings.database_url, "`artifactlog run` checks the URLs"
    assert settings.nats_url, "`artifactlog run` checks the URLs"
    stop = asyncio.Event()
    stop_on_signals(stop)
    pool = await open_pool(settings.database_url, max_size=20)
    try:
        nats = await connect(settings.nats_url, name=f"artifactlog-{role.replace(':', '-')}")
        try:
            await ensure_stream(nats.jetstream(), settings)
            print(ready_line(role.split(":")[0]), flush=True)
            await _run(role, pool, nats, settings, stop)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nats.close(), 5)
    finally:
        await pool.close()


async def _run(role: str, pool: AsyncConnectionPool, nats: NatsClient, settings: Settings,
               stop: asyncio.Event) -> None:
    if role == "relay":
        await relay(pool, nats, settings).run(stop)
    elif role == "ingest":
        from core.ingest_nats import NatsIngestWorker

        await NatsIngestWorker(nats, artifact_service(pool, settings)).run(stop)
    elif role == "webhooks":  # the dispatcher, and retention as its maintenance duty
        from core.webhooks_worker import WebhookDispatcher

        service = artifact_service(pool, settings)
        await asyncio.gather(WebhookDispatcher(pool, service.store).run(stop),
                             maintenance(service, pool, stop))
    elif role == "capture":  # the log to Parquet files, continuously (core/capture.py)
        from core.capture import Capture

        directory = settings.capture_dir or settings.home / "capture"
        store = artifact_service(pool, settings).store  # its content store, maybe S3
        await Capture(pool, store, directory, content=settings.capture_content).run(
            stop, settings.capture_interval_seconds)
    else:
        chosen = projection(role.removeprefix("projection:"), pool, settings)
        try:
            await projection_worker(chosen, pool, nats, settings).run(stop)
        finally:
            await chosen.close()
