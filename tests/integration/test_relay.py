"""The relay against real Postgres and nats-server: order, exactly one message per event,
late commits, crashes of the relay and restarts of nats-server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import psycopg
import pytest

from core.commands import IngestVersion
from core.content import encode_content
from core.events import NewEvent, VersionIngested
from core.ports import AppendBatch
from core.relay import active_relay
from core.runtime import EmbeddedNats, free_port
from core.settings import Settings
from tests.integration.streams import System, open_system, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


async def ingest_many(system: System, count: int, *, artifacts: int = 5, tag: str = "") -> None:
    for i in range(count):
        await system.service.ingest(IngestVersion("ns", f"a{i % artifacts}",
                                                  content={"i": i, "tag": tag}))


def assert_exactly_once_in_order(messages: list[dict[str, Any]], log_ids: list[str]) -> None:
    assert [m["eventId"] for m in messages] == log_ids
    assert [m["msg_id"] for m in messages] == log_ids
    positions = [m["position"] for m in messages]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)


async def test_publishes_every_event_once_in_position_order(system: System) -> None:
    await ingest_many(system, 40)
    relay = system.relay()
    await relay.resume()
    assert await relay.publish_pending() == 40
    assert await relay.publish_pending() == 0
    assert_exactly_once_in_order(await system.stream_messages(), await system.log_ids())


async def test_republishing_is_deduplicated_by_event_id(system: System) -> None:
    await ingest_many(system, 10)
    relay = system.relay()
    await relay.resume()
    await relay.publish_pending()
    events = await system.store.read_after(0, 100)
    relay.publisher.last_sequence = None  # no order guard: a blind republish
    await relay.publisher.publish(events)  # as a relay that crashed before its checkpoint would
    assert_exactly_once_in_order(await system.stream_messages(), await system.log_ids())


async def test_a_new_relay_resumes_after_the_stream_tail_not_its_checkpoint(
    system: System,
) -> None:
    await ingest_many(system, 10)
    first = system.relay(name="relay")
    await first.resume()
    await first.publish_pending()
    async with system.pool.connection() as conn:  # as if the checkpoint write was lost
        await conn.execute("UPDATE relay_checkpoints SET position = 0")
    await ingest_many(system, 5, tag="more")
    second = system.relay(name="relay")
    await second.resume()
    assert second.position == first.position
    assert await second.publish_pending() == 5
    assert_exactly_once_in_order(await system.stream_messages(), await system.log_ids())


def new_event(namespace: str, name: str, number: int) -> tuple[NewEvent, Any]:
    content = encode_content(content={"n": number, "name": name}, max_bytes=1024)
    event = VersionIngested(number=number, kind="dataset", label=f"v{number}",
                            digest=content.digest, size=content.size, media_type=None,
                            content_type="json")
    return NewEvent(namespace, name, number, event), content


async def test_a_late_commit_with_a_lower_position_is_not_skipped(system: System) -> None:
    relay = system.relay()
    await relay.resume()
    early, early_content = new_event("ns", "early", 1)
    late, late_content = new_event("ns", "late", 1)
    async with system.pool.connection() as conn:
        async with conn.transaction():
            # A transaction appends first and takes its position, then is slow to commit...
            [held] = await system.store.write(conn, AppendBatch([early], [early_content]))
            # ...while another appends and commits, and the relay keeps tailing the log.
            other = asyncio.create_task(system.store.append(AppendBatch([late], [late_content])))
            await asyncio.sleep(0.3)
            assert await relay.publish_pending() == 0
            assert not other.done(), "a later append must not commit ahead of an earlier one"
        [committed_later] = await other
    assert held.position < committed_later.position
    assert await relay.publish_pending() == 2
    messages = await system.stream_messages()
    assert [m["position"] for m in messages] == [held.position, committed_later.position]


async def test_a_rolled_back_append_leaves_a_gap_the_relay_steps_over(system: System) -> None:
    relay = system.relay()
    await relay.resume()
    doomed, doomed_content = new_event("ns", "doomed", 1)
    async with system.pool.connection() as conn, conn.transaction():
        await system.store.write(conn, AppendBatch([doomed], [doomed_content]))
        raise psycopg.Rollback  # its position is taken, then never committed
    await ingest_many(system, 3)
    assert await relay.publish_pending() == 3
    assert_exactly_once_in_order(await system.stream_messages(), await system.log_ids())


async def test_many_commits_with_random_delays_while_the_relay_tails(system: System) -> None:
    stop = asyncio.Event()
    relay = system.relay(poll_interval=0.05)
    relay_task = asyncio.create_task(relay.run(stop))
    rng = random.Random(7)

    async def slow_append(i: int) -> None:
        event, content = new_event("ns", f"slow{i}", 1)
        async with system.pool.connection() as conn, conn.transaction():
            await asyncio.sleep(rng.random() * 0.02)
            await system.store.write(conn, AppendBatch([event], [content]))
            await asyncio.sleep(rng.random() * 0.05)  # commit late, in random order

    await asyncio.gather(*[slow_append(i) for i in range(150)])
    expected = await system.log_ids()
    await wait_until(partial(system.published_at_least, len(expected)))
    stop.set()
    await relay_task
    assert_exactly_once_in_order(await system.stream_messages(), expected)


def relay_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": settings.database_url or "",
           "NATS_URL": settings.nats_url or "", "ARTIFACTLOG_STREAM": settings.stream_name,
           "ARTIFACTLOG_SUBJECT_PREFIX": settings.subject_prefix,
           "ARTIFACTLOG_RELAY_BATCH_SIZE": "50", "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "api.cli", "run", "relay"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _leads(system: System, pid: int) -> bool:
    return await active_relay(system.pool, system.settings.stream_name) == (
        f"artifactlog-relay-{pid}")


@pytest.mark.slow
async def test_relay_killed_with_sigkill_again_and_again_loses_and_doubles_nothing(
    system: System,
) -> None:
    producer = asyncio.create_task(ingest_many(system, 1200, artifacts=20))
    kills = 0
    while not producer.done() or kills < 3:
        proc = relay_process(system.settings)
        # Killed only once it leads: a loaded machine can take seconds just to start Python.
        await wait_until(lambda p=proc: _leads(system, p.pid), within=60, interval=0.02)
        await asyncio.sleep(0.8 + random.random() * 0.8)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    await producer
    published_by_killed_relays = len(await system.stream_messages())
    final = relay_process(system.settings)
    try:
        expected = await system.log_ids()
        await wait_until(partial(system.published_at_least, len(expected)), within=60)
    finally:
        final.terminate()
        final.wait(10)
    assert kills >= 3
    assert published_by_killed_relays > 0
    assert_exactly_once_in_order(await system.stream_messages(), expected)


@pytest.mark.slow
async def test_nats_server_killed_and_restarted_during_publishing(
    fresh_settings: Settings, tmp_path: Any,
) -> None:
    nats = EmbeddedNats(tmp_path / "nats", free_port())
    nats.start()
    settings = fresh_settings.with_overrides(nats_url=nats.url)
    try:
        async with open_system(settings) as system:
            stop = asyncio.Event()
            relay = system.relay(batch_size=50, poll_interval=0.05)
            relay_task = asyncio.create_task(relay.run(stop))
            producer = asyncio.create_task(ingest_many(system, 600, artifacts=10))
            await wait_until(partial(system.published_at_least, 100), within=30, interval=0.02)
            nats.kill()
            await asyncio.sleep(1.0)  # appends go on while the broker is down
            nats.start()
            await producer
            expected = await system.log_ids()
            await wait_until(partial(system.published_at_least, len(expected)), within=60)
            stop.set()
            await relay_task
            assert_exactly_once_in_order(await system.stream_messages(), expected)
    finally:
        nats.stop()
