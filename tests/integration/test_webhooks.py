"""Webhooks against the real event log and a real HTTP receiver on 127.0.0.1: signed bodies
with the previous production version and the actor, a receiver that is down and then up
(every delivery exactly once, in order), the delivery log, and bad subscriptions.

Each test has a database of its own, so the dispatcher sees only the test's webhooks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.commands import IngestVersion, PromoteVersion, VersionRef
from core.db import open_pool
from core.errors import NotFound, ValidationError
from core.eventlog_pg import PostgresEventStore
from core.services import ArtifactService
from core.settings import Settings
from core.webhooks_pg import WebhookStore
from core.webhooks_service import WebhookService
from core.webhooks_worker import DISPATCH_LOCK_KEY, WebhookDispatcher
from tests.conftest import role_process
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class System:
    service: ArtifactService
    webhooks: WebhookService
    dispatcher: WebhookDispatcher
    clock: Clock
    http: httpx.AsyncClient


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    assert fresh_settings.database_url
    pool = await open_pool(fresh_settings.database_url)
    store = PostgresEventStore(pool)
    clock = Clock()
    dispatcher = WebhookDispatcher(pool, store, clock=clock, timeout_seconds=2,
                                   backoff_base_seconds=1, backoff_cap_seconds=8)
    async with httpx.AsyncClient(timeout=2) as http:
        yield System(ArtifactService(store, max_content_bytes=1 << 20),
                     WebhookService(WebhookStore(pool), store), dispatcher, clock, http)
    await pool.close()


async def test_promotion_is_signed_with_previous_production_and_actor(system: System) -> None:
    service = system.service
    for w in (1, 2):
        await service.ingest(IngestVersion("ml", "model", content={"w": w}))
    await service.promote(PromoteVersion(VersionRef("ml", "model", 1), actor="ana"))
    receiver = Receiver()
    webhook, secret = await system.webhooks.create(
        receiver.url, event_types=["VersionPromoted"], namespaces=["ml"], actor="admin")
    receiver.secret = secret
    receiver.start()
    try:
        await service.ingest(IngestVersion("other", "x", content={}))  # not ours
        await service.promote(PromoteVersion(VersionRef("ml", "model", 2), "better", "bo"))
        assert await system.dispatcher.tick(system.http) == 1
    finally:
        receiver.stop()
    (got,) = receiver.received
    assert got.verified  # HMAC over "timestamp." + raw body with the webhook's secret
    body = got.body
    assert (body["type"], body["actor"], body["webhookId"]) == (
        "VersionPromoted", "bo", str(webhook.id))
    assert body["version"]["number"] == 2
    assert body["version"]["stage"] == "PRODUCTION"
    assert body["previous"]["production"]["number"] == 1
    assert body["previous"]["production"]["stage"] == "PRODUCTION"  # as it was before
    assert body["previous"]["version"]["stage"] == "DRAFT"
    assert body["event"]["payload"]["reason"] == "better"
    assert got.delivery == body["id"]
    assert secret not in got.raw.decode()
    (delivery, attempts), = await system.webhooks.deliveries(str(webhook.id))
    assert (delivery.status, delivery.attempts, [a.status_code for a in attempts]) == (
        "DELIVERED", 1, [204])


async def test_receiver_down_then_up_gets_everything_once_in_order(system: System) -> None:
    receiver = Receiver()
    webhook, receiver.secret = await system.webhooks.create(receiver.url, namespaces=["ds"])
    for i in range(5):
        await system.service.ingest(IngestVersion("ds", "table", content={"i": i}))
    await system.service.promote(PromoteVersion(VersionRef("ds", "table", 3), actor="ana"))

    # Down: the first delivery fails, then waits out its backoff (1 s, 2 s, 4 s ...).
    assert await system.dispatcher.tick(system.http) == 0
    assert await system.dispatcher.tick(system.http) == 0  # not due yet: no new attempt
    system.clock.advance(1)
    assert await system.dispatcher.tick(system.http) == 0
    log = await system.webhooks.deliveries(str(webhook.id))
    assert [d.status for d, _ in log] == ["PENDING"] * 6
    first, attempts = log[-1]
    assert first.attempts == 2
    assert "ConnectError" in (first.last_error or "")
    assert [a.status_code for a in attempts] == [None, None]
    pending = await system.webhooks.deliveries(str(webhook.id), status="PENDING")
    assert len(pending) == 6

    receiver.start()
    try:
        system.clock.advance(2)
        assert await system.dispatcher.tick(system.http) == 6
        await system.service.ingest(IngestVersion("ds", "table", content={"i": "late"}))
        assert await system.dispatcher.tick(system.http) == 1
        assert await system.dispatcher.tick(system.http) == 0
    finally:
        receiver.stop()
    ids = [r.delivery for r in receiver.received]
    assert len(ids) == len(set(ids)) == 7  # exactly once each
    positions = [r.body["event"]["position"] for r in receiver.received]
    assert positions == sorted(positions)
    assert [r.body["type"] for r in receiver.received] == [
        *["VersionIngested"] * 5, "VersionPromoted", "VersionIngested"]
    assert all(r.verified for r in receiver.received)
    delivered = await system.webhooks.deliveries(str(webhook.id), status="DELIVERED")
    assert len(delivered) == 7
    assert delivered[-1][0].attempts == 3


async def test_failing_receiver_gives_up_after_max_attempts(system: System) -> None:
    receiver = Receiver()
    system.dispatcher.max_attempts = 2
    webhook, _ = await system.webhooks.create(receiver.url)
    await system.service.ingest(IngestVersion("ns", "a", content={}))
    await system.service.ingest(IngestVersion("ns", "a", content={"b": 1}))
    for _ in range(4):
        await system.dispatcher.tick(system.http)
        system.clock.advance(10)
    statuses = [d.status for d, _ in await system.webhooks.deliveries(str(webhook.id))]
    assert statuses == ["FAILED", "FAILED"]  # newest first; the queue moved on


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "ftp://x/h"}, "url"),
    ({"url": "http://x/h", "event_types": ["Promoted"]}, "unknown event types"),
    ({"url": "http://x/h", "namespaces": ["no/slash"]}, "namespace"),
    ({"url": "http://x/h", "from_position": -1}, "fromPosition"),
])
async def test_bad_subscriptions_are_refused_and_nothing_written(
        system: System, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        await system.webhooks.create(**kwargs)  # type: ignore[arg-type]
    assert await system.webhooks.list() == []
    with pytest.raises(ValidationError, match="UUID"):
        await system.webhooks.deliveries("nope")
    with pytest.raises(NotFound):
        await system.webhooks.delete("00000000-0000-0000-0000-000000000000")


async def test_two_dispatchers_deliver_each_event_once(system: System) -> None:
    """Two workers (say `artifactlog up` and `artifactlog run webhooks`) on one database: one
    leads, the other stands by, and nothing arrives twice."""
    receiver = Receiver()
    _, receiver.secret = await system.webhooks.create(receiver.url)
    store = system.dispatcher.events
    workers = [WebhookDispatcher(system.dispatcher.pool, store, poll_seconds=0.02)
               for _ in range(2)]
    stop = asyncio.Event()
    receiver.start()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        for i in range(8):
            await system.service.ingest(IngestVersion("ns", "a", content={"i": i}))
        deadline = time.monotonic() + 20
        while len(receiver.received) < 8 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the receiver runs in a thread: polling is what fits
        await asyncio.sleep(0.3)  # room for a duplicate to show up, if there were one
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        receiver.stop()
    ids = [r.delivery for r in receiver.received]
    assert len(ids) == len(set(ids)) == 8
    assert [r.body["event"]["payload"]["number"] for r in receiver.received] == list(
        range(1, 9))


async def test_previous_production_is_right_for_each_promotion_of_one_batch(
        system: System) -> None:
    receiver = Receiver()
    _, receiver.secret = await system.webhooks.create(receiver.url,
                                                      event_types=["VersionPromoted"])
    for i in range(3):
        await system.service.ingest(IngestVersion("ml", "m", content={"i": i}))
    for number in (1, 2, 3, 1):
        await system.service.promote(PromoteVersion(VersionRef("ml", "m", number),
                                                    actor=f"actor{number}"))
    receiver.start()
    try:
        assert await system.dispatcher.tick(system.http) == 4
    finally:
        receiver.stop()
    bodies = [r.body for r in receiver.received]
    assert [(b["version"]["number"], (b["previous"]["production"] or {}).get("number"),
             b["actor"]) for b in bodies] == [
        (1, None, "actor1"), (2, 1, "actor2"), (3, 2, "actor3"), (1, 3, "actor1")]
    assert bodies[3]["previous"]["version"]["stage"] == "SUPERSEDED"


def test_the_webhooks_role_runs_as_a_process(fresh_settings: Settings) -> None:
    """`artifactlog run webhooks`: deliveries from a process of its own."""
    import anyio

    async def subscribe_and_ingest(url: str) -> str:
        assert fresh_settings.database_url
        pool = await open_pool(fresh_settings.database_url)
        try:
            store = PostgresEventStore(pool)
            _, secret = await WebhookService(WebhookStore(pool), store).create(url)
            await ArtifactService(store, max_content_bytes=1024).ingest(
                IngestVersion("ns", "a", content={"from": "role"}))
            return secret
        finally:
            await pool.close()

    receiver = Receiver()
    receiver.secret = anyio.run(subscribe_and_ingest, receiver.url)
    receiver.start()
    process = role_process(fresh_settings, "webhooks")
    try:
        deadline = time.monotonic() + 60
        while not receiver.received and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(20)
        receiver.stop()
    assert [r.body["event"]["payload"]["number"] for r in receiver.received] == [1]
    assert receiver.received[0].verified
    assert receiver.secret not in (fresh_settings.home / "webhooks.log").read_text()


async def test_dispatcher_survives_losing_its_lock_connection(system: System) -> None:
    receiver = Receiver()
    _, receiver.secret = await system.webhooks.create(receiver.url)
    dispatcher = WebhookDispatcher(system.dispatcher.pool, system.dispatcher.events,
                                   poll_seconds=0.02)
    stop = asyncio.Event()
    receiver.start()
    task = asyncio.create_task(dispatcher.run(stop))

    async def received(count: int) -> None:
        deadline = time.monotonic() + 20
        while len(receiver.received) < count and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the receiver runs in a thread: polling is what fits
        assert len(receiver.received) == count

    try:
        await system.service.ingest(IngestVersion("ns", "a", content={"i": 1}))
        await received(1)
        async with dispatcher.pool.connection() as conn:  # as a Postgres restart would
            cur = await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND objid = %s AND granted", (DISPATCH_LOCK_KEY,))
            assert [row[0] for row in await cur.fetchall()] == [True]
        await system.service.ingest(IngestVersion("ns", "a", content={"i": 2}))
        await received(2)
    finally:
        stop.set()
        await task
        receiver.stop()
    assert [r.body["event"]["payload"]["number"] for r in receiver.received] == [1, 2]


async def test_a_backlog_drains_in_order_once(system: System) -> None:
    """A receiver that comes back to a backlog of 300 deliveries (over several artifacts):
    all arrive, once each, in log order."""
    receiver = Receiver()
    _, receiver.secret = await system.webhooks.create(receiver.url)
    for i in range(300):
        await system.service.ingest(IngestVersion("ns", f"a{i % 7}", content={"i": i}))
    receiver.start()
    try:
        started = time.perf_counter()
        assert await system.dispatcher.tick(system.http) == 300
        seconds = time.perf_counter() - started
    finally:
        receiver.stop()
    positions = [r.body["event"]["position"] for r in receiver.received]
    assert positions == sorted(set(positions))
    assert len(positions) == 300
    assert seconds < 60, f"300 deliveries took {seconds:.1f}s"
