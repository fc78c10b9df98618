"""The events table partitioned by position range (migration 0006), with partitions of 10
positions so that a few dozen events cross many boundaries: every reader and the relay see
every event in order, partitions appear ahead of need without blocking readers, and the
single table's guarantees (immutability, uniqueness, commit order) still hold."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from core.commands import IngestVersion
from core.content import encode_content
from core.db import MIGRATIONS_DIR, migrate, sqlalchemy_url
from core.errors import Conflict, StreamVersionTaken
from core.events import NewEvent, VersionIngested
from core.history_pg import HistoryReader
from core.ports import AppendBatch
from projections.leases import PartitionLeases
from projections.parking import ParkingLot
from projections.runner import ProjectionWorker
from projections.status import projection_status
from projections.version_history import VersionHistoryProjection
from tests.conftest import Engines
from tests.integration.streams import System, open_system, running, wait_until

pytestmark = pytest.mark.anyio

SIZE = 10  # positions per partition


@pytest.fixture
def small_partitions_url(engines: Engines, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database whose migration made partitions of SIZE positions."""
    database = f"p_{uuid.uuid4().hex[:10]}"
    base = engines.postgres.url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    monkeypatch.setenv("ARTIFACTLOG_EVENT_PARTITION_SIZE", str(SIZE))
    migrate(f"{base}/{database}")
    return f"{base}/{database}"


@pytest.fixture
async def system(engines: Engines, small_partitions_url: str) -> AsyncIterator[System]:
    suffix = uuid.uuid4().hex[:10]
    settings = engines.settings(database_url=small_partitions_url, stream_name=f"P_{suffix}",
                                subject_prefix=f"p{suffix}.events")
    async with open_system(settings) as system:
        yield system


def ingested(name: str, number: int, **kwargs: Any) -> NewEvent:
    return NewEvent("ns", name, number, VersionIngested(
        number=number, kind="dataset", label=f"v{number}", digest=f"{name}-{number}", size=1,
        media_type=None, content_type="json"), **kwargs)


async def partitions(system: System) -> dict[str, tuple[int, int]]:
    """Each partition of ``events`` with its (from, to) bounds."""
    async with system.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass")
        rows = await cur.fetchall()
    bounds = {}
    for name, expr in rows:
        low, high = (int(part.split("'")[1]) for part in expr.split(" TO "))
        bounds[name] = (low, high)
    return bounds


async def rows_per_partition(system: System) -> dict[str, int]:
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT tableoid::regclass::text, count(*) FROM events"
                                 " GROUP BY 1")
        return dict(await cur.fetchall())


def worker(system: System) -> ProjectionWorker:
    assert system.settings.database_url
    leases = PartitionLeases(system.settings.database_url, "version_history",
                             system.settings.partitions)
    return ProjectionWorker(VersionHistoryProjection(system.pool), system.js, system.settings,
                            leases, ParkingLot(system.pool), rebalance_interval=0.2)


async def caught_up(system: System) -> bool:
    status = await projection_status(VersionHistoryProjection(system.pool), system.pool,
                                     system.js, system.settings)
    return status.lag == 0 and status.head > 0


async def test_readers_and_the_relay_see_every_event_in_order_across_boundaries(
    system: System,
) -> None:
    for i in range(36):  # one event per append: each boundary crossed by a lone append
        await system.service.ingest(IngestVersion("ns", f"a{i % 3}", content={"i": i}))
    content = encode_content(content={"batch": 1}, max_bytes=100)
    batch = [ingested("big", n) for n in range(1, 28)]  # one append over three boundaries
    await system.store.append(AppendBatch(batch, [content]))

    log = await system.store.read_after(0, 1000)
    assert len(log) == 63
    assert [e.position for e in log] == sorted({e.position for e in log})
    assert len(await rows_per_partition(system)) >= 6
    paged, position = [], 0
    while page := await system.store.read_after(position, 7):  # pages straddle boundaries
        paged += page
        position = page[-1].position
    assert [e.event_id for e in paged] == [e.event_id for e in log]
    for name, count in (("a0", 12), ("a1", 12), ("a2", 12), ("big", 27)):
        stream = await system.store.load_stream("ns", name)
        assert [e.stream_version for e in stream] == list(range(1, count + 1))
        assert [e.position for e in stream] == sorted(e.position for e in stream)
    middle = log[len(log) // 2].position
    as_of = await system.store.load_stream("ns", "big", to_position=middle)
    assert [e.position for e in as_of] == [e.position for e in log
                                           if e.namespace == "ns" and e.name == "big"
                                           and e.position <= middle]

    async with running(system.relay(poll_interval=0.05).run, worker(system).run):
        await wait_until(lambda: caught_up(system), within=30)
    messages = await system.stream_messages()
    assert [m["eventId"] for m in messages] == [str(e.event_id) for e in log]
    reader = HistoryReader(system.pool)
    for name in ("a0", "a1", "a2", "big"):
        state = await system.service.load("ns", name)
        stored, _ = await reader.versions_page("ns", name, stage=None, after_number=0,
                                               limit=100)
        assert [v.number for v in stored] == [v.number for v in state.versions]
        assert len(stored) == len(state.versions) > 0


async def test_partitions_are_created_ahead_of_need(system: System) -> None:
    await system.store.append(AppendBatch([ingested("x", 1)]))
    before = await partitions(system)
    await system.store.append(AppendBatch([ingested("x", n) for n in range(2, 41)]))
    after = await partitions(system)
    head = await system.store.head_position()
    horizon = max(high for _, high in after.values())
    assert set(before) < set(after)
    assert horizon > head + SIZE  # at least one whole empty partition beyond the head
    ranges = sorted(after.values())
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # no holes
    assert all(high - low == SIZE for low, high in ranges)


async def test_a_reader_in_a_long_transaction_does_not_block_new_partitions(
    system: System,
) -> None:
    async with system.pool.connection() as reader, reader.transaction():
        await reader.execute("SELECT count(*) FROM events")  # holds its locks until the end
        before = await partitions(system)
        await asyncio.wait_for(
            system.store.append(AppendBatch([ingested("y", n) for n in range(1, 31)])), 10)
        assert len(await partitions(system)) > len(before)


async def test_concurrent_appends_at_a_boundary_keep_commit_order(system: System) -> None:
    await system.store.append(AppendBatch([ingested("fill", n) for n in range(1, SIZE - 2)]))
    relay = system.relay()
    await relay.resume()

    async def writer(w: int) -> None:
        for n in range(1, 5):  # 8 writers x 4 appends race over the next boundaries
            await system.store.append(AppendBatch([ingested(f"w{w}", n)]))

    async def hot(i: int) -> int:
        try:
            await system.store.append(AppendBatch([ingested("hot", 1, event_id=uuid.uuid4())]))
            return 1
        except StreamVersionTaken:
            return 0

    results = await asyncio.gather(*[writer(w) for w in range(8)], *[hot(i) for i in range(6)])
    assert sum(r for r in results if r is not None) == 1  # exactly one "hot" v1 won
    log = await system.store.read_after(0, 1000)
    assert len(log) == (SIZE - 3) + 8 * 4 + 1
    assert await relay.publish_pending() == len(log)
    messages = await system.stream_messages()
    assert [m["eventId"] for m in messages] == [str(e.event_id) for e in log]
    assert [m["position"] for m in messages] == sorted(m["position"] for m in messages)


async def test_history_cannot_be_changed_in_any_partition(system: System) -> None:
    await system.store.append(AppendBatch([ingested("z", n) for n in range(1, 25)]))
    names = sorted(await rows_per_partition(system))
    statements = ["UPDATE events SET type = 'X'", "DELETE FROM events", "TRUNCATE events",
                  "UPDATE event_keys SET name = 'X'", "DELETE FROM event_keys",
                  "TRUNCATE event_keys"]
    for name in names:
        statements += [f"UPDATE {name} SET type = 'X'", f"DELETE FROM {name}",
                       f"TRUNCATE {name}"]
    async with system.pool.connection() as conn:
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
                async with conn.transaction():
                    await conn.execute(statement)
    assert len(await system.store.read_after(0, 100)) == 24


async def test_uniqueness_holds_across_partitions(system: System) -> None:
    first = ingested("u", 1)
    await system.store.append(AppendBatch([first]))
    await system.store.append(AppendBatch([ingested("other", n) for n in range(1, 3 * SIZE)]))
    with pytest.raises(StreamVersionTaken):  # would land two partitions after the first
        await system.store.append(AppendBatch([ingested("u", 1)]))
    reused_id = ingested("u", 2, event_id=first.event_id)
    with pytest.raises(Conflict, match="event id"):
        await system.store.append(AppendBatch([reused_id]))
    stream = await system.store.load_stream("ns", "u")
    assert [(e.stream_version, e.event_id) for e in stream] == [(1, first.event_id)]
    assert len(await system.store.read_after(0, 1000)) == 3 * SIZE


def test_downgrade_and_upgrade_keep_every_event(small_partitions_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(small_partitions_url))
    with psycopg.connect(small_partitions_url, autocommit=True) as conn:
        for n in range(1, 26):
            conn.execute("INSERT INTO events (event_id, namespace, name, stream_version, type,"
                         " payload) VALUES (gen_random_uuid(), 'ns', 'd', %s, 'T', '{}')", (n,))
        expected = conn.execute("SELECT * FROM events ORDER BY position").fetchall()
    command.downgrade(config, "0005")
    with psycopg.connect(small_partitions_url, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM events ORDER BY position").fetchall() == expected
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'events'"
                            ).fetchone() == ("r",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM events")
        [(position,)] = conn.execute(
            "INSERT INTO events (event_id, namespace, name, stream_version, type, payload)"
            " VALUES (gen_random_uuid(), 'ns', 'd', 26, 'T', '{}') RETURNING position")
        assert position > expected[-1][0]
    migrate(small_partitions_url)
    with psycopg.connect(small_partitions_url, autocommit=True) as conn:
        rows = conn.execute("SELECT * FROM events ORDER BY position").fetchall()
        assert rows[:-1] == expected
        assert len(rows) == 26
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'events'"
                            ).fetchone() == ("p",)
        with pytest.raises(psycopg.errors.UniqueViolation):  # the keys of the copied rows
            conn.execute("INSERT INTO event_keys VALUES (gen_random_uuid(), 'ns', 'd', 3)")
