"""Reading back what the relay put on JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamInfo
from psycopg_pool import AsyncConnectionPool

from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.jetstream import JetStreamPublisher, connect, ensure_stream
from core.relay import Relay
from core.services import ArtifactService
from core.settings import Settings

# What a JetStream request gets while the cluster cannot answer it: "no responders", a 503, a
# timeout (nats.errors.TimeoutError is a TimeoutError).
UNANSWERED = (TimeoutError, nats.errors.Error)


@dataclass
class System:
    settings: Settings
    pool: AsyncConnectionPool
    store: PostgresEventStore
    service: ArtifactService
    nats: NatsClient
    js: JetStreamContext

    def relay(self, **kwargs: Any) -> Relay:
        return Relay(self.pool, JetStreamPublisher(self.js, self.settings), **kwargs)

    async def stream_messages(self) -> list[dict[str, Any]]:
        return await read_stream(self.js, self.settings.stream_name,
                                 f"{self.settings.subject_prefix}.>")

    async def published(self) -> int:
        """Messages in the events stream; raises if the stream cannot answer."""
        return int((await self.js.stream_info(self.settings.stream_name)).state.messages)

    async def published_at_least(self, count: int) -> bool:
        """False too while the stream cannot answer (a leader election, a node coming back)."""
        info = await stream_info_or_none(self.js, self.settings.stream_name)
        return info is not None and info.state.messages >= count

    async def log_ids(self) -> list[str]:
        return [str(e.event_id) for e in await self.store.read_after(0, 1_000_000)]


@asynccontextmanager
async def open_system(settings: Settings) -> AsyncIterator[System]:
    assert settings.database_url
    assert settings.nats_url
    pool = await open_pool(settings.database_url, max_size=30)
    nc = await connect(settings.nats_url, name="test")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        store = PostgresEventStore(pool)
        service = ArtifactService(store, max_content_bytes=settings.max_content_bytes)
        yield System(settings, pool, store, service, nc, js)
    finally:
        await nc.close()
        await pool.close()


async def read_stream(js: JetStreamContext, stream: str, subject: str,
                      within: float = 60.0) -> list[dict[str, Any]]:
    """Every message in the stream, in stream order, with its stream sequence.

    In a cluster a node that has just come back may hold the reading consumer while it catches
    up ("no responders", 503, timeouts); the read then resumes after the last message it got
    on a new consumer until ``within`` seconds have passed."""
    total: int | None = None
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while total is None or len(messages) < total:
        try:
            if total is None:
                total = (await js.stream_info(stream)).state.messages
            await _read_into(messages, js, stream, subject, total)
        except UNANSWERED:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    return messages


async def _read_into(messages: list[dict[str, Any]], js: JetStreamContext, stream: str,
                     subject: str, total: int) -> None:
    start = messages[-1]["seq"] + 1 if messages else 1
    sub = await js.pull_subscribe(
        subject, stream=stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            ack_policy=AckPolicy.NONE, inactive_threshold=30))
    try:
        while len(messages) < total:
            batch = await sub.fetch(min(1000, total - len(messages)), timeout=5)
            messages += [{**json.loads(m.data), "seq": m.metadata.sequence.stream,
                          "msg_id": (m.headers or {}).get("Nats-Msg-Id")} for m in batch]
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def stream_info_or_none(js: JetStreamContext, stream: str) -> StreamInfo | None:
    """The stream's info, or None while a cluster cannot answer (a stream leader election, a
    client reconnecting after its node was killed)."""
    try:
        return await js.stream_info(stream)
    except UNANSWERED:
        return None


async def wait_until(predicate: Any, within: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


@asynccontextmanager
async def running(*runs: Any) -> AsyncIterator[asyncio.Event]:
    """Run ``run(stop)`` coroutines (relays, workers) until the block ends; their errors
    are raised once all have stopped."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run(stop)) for run in runs]
    try:
        yield stop
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
