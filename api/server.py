"""Composition root: wires the adapters, services, relay and HTTP server for one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import uvicorn
from nats.aio.client import Client as NatsClient
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.jetstream import JetStreamPublisher, connect, ensure_stream
from core.relay import Relay
from core.services import ArtifactService
from core.settings import Settings

log = logging.getLogger("artifactlog.server")


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
    service: ArtifactService

    def relay(self) -> Relay:
        return Relay(self.pool, JetStreamPublisher(self.nats.jetstream(), self.settings),
                     batch_size=self.settings.relay_batch_size)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, role: str) -> AsyncIterator[Runtime]:
    assert settings.database_url, "Stack.start() fills in the URLs"
    assert settings.nats_url, "Stack.start() fills in the URLs"
    pool = await open_pool(settings.database_url, max_size=20)
    try:
        nc = await connect(settings.nats_url, name=f"artifactlog-{role}")
        try:
            await ensure_stream(nc.jetstream(), settings)
            service = ArtifactService(PostgresEventStore(pool),
                                      max_content_bytes=settings.max_content_bytes)
            yield Runtime(settings, pool, nc, service)
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
    finally:
        await pool.close()


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def serve(
    settings: Settings, *, with_relay: bool = True,
    on_ready: Callable[[Runtime], Awaitable[None]] | None = None,
) -> None:
    """Serve the API (and run the relay) until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with open_runtime(settings, role="api") as runtime:
        tasks = []
        if with_relay:
            tasks.append(asyncio.create_task(runtime.relay().run(stop), name="relay"))
        config = uvicorn.Config(create_app(runtime.service), host=settings.host,
                                port=settings.port, log_level="warning", lifespan="off")
        server = ApiServer(config)
        server_task = asyncio.create_task(server.serve(), name="http")
        # uvicorn reports readiness only as a flag
        while not server.started and not server_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if server_task.done():
            stop.set()
        elif on_ready is not None:
            await on_ready(runtime)
        await asyncio.wait([asyncio.create_task(stop.wait()), server_task],
                           return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await asyncio.gather(server_task, *tasks, return_exceptions=True)


async def run_relay(settings: Settings) -> None:
    """Only the relay, as its own process."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with open_runtime(settings, role="relay") as runtime:
        await runtime.relay().run(stop)
