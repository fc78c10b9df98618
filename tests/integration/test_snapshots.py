"""Snapshots never change an answer: on an artifact with every kind of event, and with a
clock that steps back, reading from snapshots equals a plain fold of the log at every
position and every time, whether the snapshots are being written, already there (read from
Postgres or this process's cache), or deleted."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from core.artifact import ArtifactState, fold
from core.commands import IngestVersion
from core.eventlog_pg import APPEND_LOCK_KEY, PostgresEventStore
from core.events import DomainEvent, NewEvent, to_payload
from core.ports import AppendBatch
from core.services import ArtifactService
from core.snapshots import FORMAT, INTERVAL
from core.snapshots_loader import SnapshotLoader
from core.snapshots_pg import PostgresSnapshots
from tests.unit.test_snapshots import assert_same, scripted_events

pytestmark = pytest.mark.anyio

EVENTS = 60
SMALL_INTERVAL = 4  # so that sixty events leave many snapshots


# Stream versions recorded between their two predecessors (a clock stepped back); 20 and 44
# are where snapshots are taken.
CLOCK_BACK = (20, 42, 44)


@pytest.fixture
async def artifact(store: PostgresEventStore, names: str) -> str:
    """``names``/a: the scripted events, appended one or three at a time, and CLOCK_BACK."""
    events = scripted_events(EVENTS)
    version = 0
    while version < EVENTS:
        if version + 1 in CLOCK_BACK:
            await append_with_clock_back(store, names, version + 1, events[version])
            version += 1
            continue
        batched = version % 2 and not any(0 <= v - version < 6 for v in CLOCK_BACK)
        chunk = events[version:version + (3 if batched else 1)]
        await store.append(AppendBatch(events=[
            NewEvent(names, "a", version + i, e, {"actor": f"u{version % 3}"})
            for i, e in enumerate(chunk, start=1)]))
        version += len(chunk)
    return names


async def append_with_clock_back(store: PostgresEventStore, namespace: str, version: int,
                                 event: DomainEvent) -> None:
    """Append as the store does, but recorded between the two previous events."""
    before, last = (await store.load_stream(namespace, "a"))[-2:]
    assert before.recorded_at < last.recorded_at
    at = before.recorded_at + (last.recorded_at - before.recorded_at) / 2
    async with store.pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT events_before_append(%s, 1)", (APPEND_LOCK_KEY,))
        await conn.execute(
            "WITH added AS (INSERT INTO events (event_id, namespace, name, stream_version,"
            " type, payload, recorded_at) VALUES (%s, %s, 'a', %s, %s, %s, %s) RETURNING *)"
            " INSERT INTO event_keys (event_id, namespace, name, stream_version)"
            " SELECT event_id, namespace, name, stream_version FROM added",
            (uuid.uuid4(), namespace, version, event.type_name, Jsonb(to_payload(event)), at))


async def plain(store: PostgresEventStore, namespace: str, *, to_position: int | None = None,
                to_time: datetime | None = None) -> ArtifactState:
    return fold(namespace, "a", await store.load_stream(namespace, "a", to_position=to_position,
                                                        to_time=to_time))


async def bounds(store: PostgresEventStore, namespace: str
                 ) -> tuple[list[int], list[datetime]]:
    """Every position from before the first event to past the last, and every recorded_at
    with a microsecond either side."""
    stream = await store.load_stream(namespace, "a")
    positions = list(range(stream[0].position - 1, stream[-1].position + 2))
    tick = timedelta(microseconds=1)
    times = sorted({t for e in stream
                    for t in (e.recorded_at - tick, e.recorded_at, e.recorded_at + tick)})
    return positions, times


async def check_every_bound(store: PostgresEventStore, loader: SnapshotLoader,
                            namespace: str) -> None:
    positions, times = await bounds(store, namespace)
    for position in positions:
        expected = await plain(store, namespace, to_position=position)
        assert_same(await loader.load(namespace, "a", to_position=position), expected)
    for at in times:
        expected = await plain(store, namespace, to_time=at)
        assert_same(await loader.load(namespace, "a", to_time=at), expected)
    for position, at in zip(positions[::3], times[::5], strict=False):  # both bounds at once
        expected = await plain(store, namespace, to_position=position, to_time=at)
        assert_same(await loader.load(namespace, "a", to_position=position, to_time=at),
                    expected)
    assert_same(await loader.load(namespace, "a"), await plain(store, namespace))
    await loader.drain()


async def stored_versions(store: PostgresEventStore, namespace: str) -> list[int]:
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT stream_version FROM artifact_snapshots"
                                 " WHERE namespace = %s ORDER BY 1", (namespace,))
        return [row[0] for row in await cur.fetchall()]


def loader(store: PostgresEventStore) -> SnapshotLoader:
    return SnapshotLoader(store, PostgresSnapshots(store.pool), interval=SMALL_INTERVAL)


async def test_snapshots_never_change_an_answer(store: PostgresEventStore,
                                                artifact: str) -> None:
    writing = loader(store)
    await check_every_bound(store, writing, artifact)  # while they are being written
    written = await stored_versions(store, artifact)
    assert written == list(range(SMALL_INTERVAL, EVENTS + 1, SMALL_INTERVAL))
    await check_every_bound(store, writing, artifact)  # from this process's cache
    await check_every_bound(store, loader(store), artifact)  # read back from Postgres
    assert await stored_versions(store, artifact) == written  # nothing rewritten
    assert await PostgresSnapshots(store.pool).delete(artifact, "a") == len(written)
    await check_every_bound(store, writing, artifact)  # deleted under a warm cache


async def test_a_read_between_a_clock_step_neither_uses_nor_leaves_a_wrong_snapshot(
        store: PostgresEventStore, artifact: str) -> None:
    """At event 20's time, event 19 is not in the log yet (as recorded_at tells): that read
    folds 1..18 and 20, which is no snapshot of version 20, and once the true one is written
    it must not stand in for that read."""
    stream = await store.load_stream(artifact, "a")
    at = stream[19].recorded_at
    assert [e.stream_version for e in await store.load_stream(artifact, "a", to_time=at)
            ][-2:] == [18, 20]
    first = loader(store)
    assert_same(await first.load(artifact, "a", to_time=at),
                await plain(store, artifact, to_time=at))
    await first.drain()
    await check_every_bound(store, loader(store), artifact)  # from what the first one wrote
    await check_every_bound(store, first, artifact)


async def test_concurrent_readers_write_each_snapshot_once(store: PostgresEventStore,
                                                           artifact: str) -> None:
    readers = [loader(store) for _ in range(4)]
    await asyncio.gather(*(r.load(artifact, "a") for r in readers))
    await asyncio.gather(*(r.drain() for r in readers))
    assert await stored_versions(store, artifact) == [SMALL_INTERVAL * (EVENTS // SMALL_INTERVAL)]


async def test_snapshots_of_another_format_or_unreadable_are_ignored(
        store: PostgresEventStore, artifact: str) -> None:
    async with store.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO artifact_snapshots (namespace, name, stream_version, high_position,"
            " high_recorded_at, format, state) VALUES (%s, 'a', 8, 0, '2000-01-01Z', %s, '{}'),"
            " (%s, 'a', 12, 0, '2000-01-01Z', %s, %s)",
            (artifact, FORMAT + 1, artifact, FORMAT, f'{{"format": {FORMAT}}}'))
    state = await loader(store).load(artifact, "a", to_position=10**12)
    assert_same(state, await plain(store, artifact))


async def test_the_service_writes_snapshots_at_its_interval(
        service: ArtifactService, store: PostgresEventStore, names: str) -> None:
    """Through ArtifactService: time travel and a first full load fold from snapshots."""
    count = INTERVAL + 20
    for start in range(0, count, 100):
        await service.ingest_many([IngestVersion(names, "a", content={"n": n})
                                   for n in range(start, min(start + 100, count))], atomic=False)
    stream = await store.load_stream(names, "a")
    middle = stream[INTERVAL + 9]
    assert_same(await service.load(names, "a", to_time=middle.recorded_at),
                await plain(store, names, to_time=middle.recorded_at))
    await service.snapshots.drain()
    assert await stored_versions(store, names) == [INTERVAL]
    fresh = ArtifactService(store, max_content_bytes=1 << 20,  # a new process, cold caches
                            snapshots=SnapshotLoader(store, PostgresSnapshots(store.pool)))
    assert_same(await fresh.load(names, "a", to_position=middle.position),
                await plain(store, names, to_position=middle.position))
    assert fresh.snapshots.cache.get(names, "a", INTERVAL) is not None  # it was read
    assert_same(await fresh.load(names, "a"), await plain(store, names))
