"""The bulk path's shortcuts (issue 7) answer exactly what loading artifact by artifact does:
states of a whole group read in one query, schemas looked up once per group, and committed
events folded into the state cache instead of being read back."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from core.commands import IngestVersion, VersionRef
from core.errors import Conflict
from core.eventlog_pg import PostgresEventStore
from core.schema_registry import SchemaRegistry, SchemaSubject
from core.services import ArtifactService
from core.settings import Settings
from core.streams_pg import PostgresStreams

pytestmark = pytest.mark.anyio


def fast(store: PostgresEventStore, settings: Settings) -> ArtifactService:
    return ArtifactService(store, max_content_bytes=settings.max_content_bytes,
                           schemas=SchemaRegistry(store.pool), streams=PostgresStreams(store.pool))


def plain(store: PostgresEventStore, settings: Settings) -> ArtifactService:
    """No shared state cache with ``fast``: every answer comes from the log."""
    return ArtifactService(store, max_content_bytes=settings.max_content_bytes)


async def test_round_robin_groups_match_a_fold_from_the_log(
        store: PostgresEventStore, settings: Settings, names: str) -> None:
    service = fast(store, settings)
    commands = [IngestVersion(names, f"a{a}", kind="dataset", content={"a": a, "n": n},
                              parents=(VersionRef(names, f"a{a - 1}", number=n),) if a else ())
                for n in range(1, 4) for a in range(150)]
    outcomes = await service.ingest_many(commands, atomic=False)
    assert [o.error for o in outcomes] == [None] * len(commands)
    assert [(o.unwrap().version.name, o.unwrap().version.number) for o in outcomes] == [
        (f"a{a}", n) for n in range(1, 4) for a in range(150)]
    # The cache the service folded commits into equals a fold from the log, positions included.
    other = plain(store, settings)
    for a in (0, 77, 149):
        cached = await service.load(names, f"a{a}")
        logged = await other.load(names, f"a{a}")
        assert cached.versions == logged.versions
        assert (cached.stream_version, cached.position) == (logged.stream_version,
                                                           logged.position)
    # Identical content again: unchanged, answered from the (cached) states.
    again = await service.ingest_many(commands[-150:], atomic=False)
    assert {o.unwrap().created for o in again} == {False}
    loaded = await PostgresStreams(store.pool).load_streams(
        {(names, "a3"): 1, (names, "missing"): 0})
    assert [e.stream_version for e in loaded[(names, "a3")]] == [2, 3]
    assert (names, "missing") not in loaded


async def test_a_writer_elsewhere_is_caught_up_and_schemas_apply_per_artifact(
        store: PostgresEventStore, settings: Settings, names: str) -> None:
    service = fast(store, settings)
    await service.ingest_many([IngestVersion(names, "x", content={"v": 1}),
                               IngestVersion(names, "y", content={"v": 1})], atomic=False)
    await plain(store, settings).ingest(IngestVersion(names, "x", content={"v": 2}))
    registry = SchemaRegistry(store.pool)
    await registry.register(SchemaSubject.artifact(names, "y"),
                            {"type": "object", "required": ["ok"]}, actor="test")
    outcomes = await service.ingest_many([
        IngestVersion(names, "x", content={"v": 3}),  # after the other writer's version 2
        IngestVersion(names, "y", content={"v": 2}),  # refused by y's schema
        IngestVersion(names, "y", content={"ok": True}),
    ], atomic=False)
    assert outcomes[0].unwrap().version.number == 3
    assert outcomes[1].error is not None
    assert outcomes[1].error.code == "VALIDATION"
    assert outcomes[2].unwrap().version.number == 2
    rejected = await registry.rejections(names, "y", limit=10)
    assert len(rejected) == 1


async def test_a_key_committed_after_the_prefetch_replays_its_version(
        store: PostgresEventStore, settings: Settings, names: str) -> None:
    service = fast(store, settings)
    await service.ingest(IngestVersion(names, "k", content={"v": 1}))
    cmd = IngestVersion(names, "k", content={"v": 2}, idempotency_key=f"{names}-key")
    first = await plain(store, settings).ingest(cmd)  # the service's cache has not seen it
    again = await service.ingest(replace(cmd))
    assert (again.version.number, again.created) == (first.version.number, False)


async def test_concurrent_single_ingests_share_a_transaction_and_keep_their_answers(
        store: PostgresEventStore, settings: Settings, names: str) -> None:
    service = fast(store, settings)
    await service.ingest(IngestVersion(names, "taken", content={"v": 1}))
    good = [IngestVersion(names, f"g{i}", content={"i": i}) for i in range(20)]
    stale = IngestVersion(names, "taken", content={"v": 2}, expected_version=0)
    answers = await asyncio.gather(*(service.ingest(c) for c in [*good, stale]),
                                   return_exceptions=True)
    assert [(a.version.name, a.version.number, a.created) for a in answers[:20]
            if not isinstance(a, BaseException)] == [(f"g{i}", 1, True) for i in range(20)]
    assert isinstance(answers[20], Conflict)  # its own error; the others were written
    async with store.pool.connection() as conn:
        rows = await (await conn.execute(
            "SELECT xmin::text, metadata->>'correlationId' FROM events WHERE namespace = %s"
            " AND name LIKE 'g%%'", (names,))).fetchall()
    assert len(rows) == 20
    assert len({xmin for xmin, _ in rows}) <= 2  # group commit: not one transaction each
    assert len({cid for _, cid in rows}) == 20  # but each request's own correlation id
