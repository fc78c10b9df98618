"""The Postgres event log through the application service, against the real embedded server."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import psycopg
import pytest

from core.artifact import Stage
from core.commands import IngestVersion, PromoteVersion, VersionRef, WithdrawVersion
from core.errors import (
    ArtifactlogError,
    Conflict,
    LimitExceeded,
    NotFound,
    StageRuleViolation,
    ValidationError,
)
from core.eventlog_pg import PostgresEventStore
from core.services import ArtifactService
from core.settings import Settings

pytestmark = pytest.mark.anyio


async def count_rows(store: PostgresEventStore) -> dict[str, int]:
    async with store.pool.connection() as conn:
        counts = {}
        for table in ("events", "content", "idempotency_keys"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            row = await cur.fetchone()
            assert row is not None
            counts[table] = row[0]
        return counts


async def test_ingest_promote_withdraw_round_trip(service: ArtifactService, names: str) -> None:
    first = await service.ingest(IngestVersion(names, "sales", kind="dataset", content=[{"a": 1}],
                                               metadata={"owner": "ana"}, producer="job-1"))
    second = await service.ingest(IngestVersion(names, "sales", content=[{"a": 2}]))
    assert (first.version.number, second.version.number) == (1, 2)
    assert first.created
    assert second.created
    assert second.position > first.position
    promoted = await service.promote(PromoteVersion(VersionRef(names, "sales", 1), "first"))
    assert promoted.previous is None
    again = await service.promote(PromoteVersion(VersionRef(names, "sales", 2), "better"))
    assert again.previous is not None
    assert (again.previous.number, again.previous.stage) == (1, Stage.SUPERSEDED)
    withdrawn = await service.withdraw(WithdrawVersion(VersionRef(names, "sales", 1)))
    state = await service.load(names, "sales")
    assert [v.stage for v in state.versions] == [Stage.WITHDRAWN, Stage.PRODUCTION]
    assert state.production == 2
    assert withdrawn.position == state.position
    assert state.versions[0].metadata == {"owner": "ana"}
    assert state.versions[0].producer == "job-1"
    assert state.kind == "dataset"


async def test_stage_rules_are_enforced_by_the_service(service: ArtifactService,
                                                       names: str) -> None:
    await service.ingest(IngestVersion(names, "m", content={"w": 1}))
    await service.promote(PromoteVersion(VersionRef(names, "m", 1)))
    with pytest.raises(StageRuleViolation, match="production version"):
        await service.withdraw(WithdrawVersion(VersionRef(names, "m", 1)))
    await service.ingest(IngestVersion(names, "m", content={"w": 2}))
    await service.withdraw(WithdrawVersion(VersionRef(names, "m", 2)))
    with pytest.raises(StageRuleViolation, match="withdrawn"):
        await service.promote(PromoteVersion(VersionRef(names, "m", 2)))
    with pytest.raises(NotFound):
        await service.promote(PromoteVersion(VersionRef(names, "nope", 1)))


async def test_idempotency_key_returns_the_original_result(service: ArtifactService,
                                                           names: str) -> None:
    cmd = IngestVersion(names, "cfg", text="a=1", idempotency_key=f"{names}-k1")
    original = await service.ingest(cmd)
    await service.ingest(IngestVersion(names, "cfg", text="a=2"))  # the artifact moves on
    retried = await service.ingest(cmd)
    assert original.created
    assert not retried.created
    assert (retried.version.number, retried.position) == (1, original.position)
    with pytest.raises(Conflict, match="already used for a different request"):
        await service.ingest(IngestVersion(names, "cfg", text="other",
                                           idempotency_key=cmd.idempotency_key))


async def test_concurrent_duplicates_with_one_key_make_one_version(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    cmd = IngestVersion(names, "dup", content={"v": 1}, idempotency_key=f"{names}-dup")
    results = await asyncio.gather(*[service.ingest(cmd) for _ in range(12)])
    assert {r.version.number for r in results} == {1}
    assert sum(r.created for r in results) == 1
    assert len(await store.load_stream(names, "dup")) == 1


async def test_identical_content_is_not_a_new_version_unless_forced(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    first = await service.ingest(IngestVersion(names, "doc", text="hello"))
    same = await service.ingest(IngestVersion(names, "doc", text="hello"))
    forced = await service.ingest(IngestVersion(names, "doc", text="hello", force=True))
    assert (same.created, same.version.number, same.position) == (False, 1, first.position)
    assert (forced.created, forced.version.number) == (True, 2)
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM content WHERE digest = %s",
                                 (first.version.digest,))
        assert await cur.fetchone() == (1,)  # stored once per digest


async def test_expected_version_conflict_names_the_current_version(
    service: ArtifactService, names: str
) -> None:
    await service.ingest(IngestVersion(names, "opt", content=1, expected_version=0))
    await service.ingest(IngestVersion(names, "opt", content=2, expected_version=1))
    with pytest.raises(Conflict, match="at version 2, expected 1") as raised:
        await service.ingest(IngestVersion(names, "opt", content=3, expected_version=1))
    assert raised.value.code == "CONFLICT"


async def test_concurrent_appends_with_expected_version_keep_numbers_contiguous(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    async def writer(worker: int) -> tuple[int, int]:
        acknowledged = conflicts = 0
        for i in range(10):
            while True:
                seen = (await service.load(names, "race")).latest_number
                try:
                    await service.ingest(IngestVersion(names, "race", content=[worker, i],
                                                       expected_version=seen))
                    acknowledged += 1
                    break
                except Conflict:
                    conflicts += 1
        return acknowledged, conflicts

    results = await asyncio.gather(*[writer(w) for w in range(6)])
    state = await service.load(names, "race")
    assert [v.number for v in state.versions] == list(range(1, 61))
    assert sum(a for a, _ in results) == 60
    assert sum(c for _, c in results) > 0  # the race really happened


async def test_events_are_immutable(service: ArtifactService, store: PostgresEventStore,
                                    names: str) -> None:
    result = await service.ingest(IngestVersion(names, "imm", content={"a": 1}))
    for statement in ("UPDATE events SET type = 'x' WHERE position = %s",
                      "DELETE FROM events WHERE position = %s"):
        async with store.pool.connection() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
                await conn.execute(statement, (result.position,))
    async with store.pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
            await conn.execute("TRUNCATE events")
    assert len(await store.load_stream(names, "imm")) == 1


def bad_ingests(names: str) -> list[tuple[IngestVersion, type[ArtifactlogError]]]:
    return [
        (IngestVersion("bad namespace", "a", content=1), ValidationError),
        (IngestVersion(names, "a.b", content=1), ValidationError),
        (IngestVersion(names, "a", content=1, text="x"), ValidationError),
        (IngestVersion(names, "a"), ValidationError),
        (IngestVersion(names, "a", content_base64="%%%"), ValidationError),
        (IngestVersion(names, "a", content={"x": float("inf")}), ValidationError),
        (IngestVersion(names, "a", text="x" * 2049), LimitExceeded),
        (IngestVersion(names, "a", content_base64=base64.b64encode(b"x" * 4096).decode()),
         LimitExceeded),
        (IngestVersion(names, "a", content=1, metadata=[1, 2]), ValidationError),  # type: ignore[arg-type]
        (IngestVersion(names, "a", content=1, expected_version=-1), ValidationError),
        (IngestVersion(names, "a", content=1, parents=(VersionRef(names, "ghost", 1),)),
         NotFound),
        (IngestVersion(names, "a", content=1, expected_version=5), Conflict),
        (IngestVersion(names, "a", content=1, idempotency_key=""), ValidationError),
    ]


async def test_every_refusal_writes_nothing(store: PostgresEventStore, settings: Settings,
                                            names: str) -> None:
    service = ArtifactService(store, max_content_bytes=2048)
    for cmd, error in bad_ingests(names):
        before = await count_rows(store)
        with pytest.raises(error):
            await service.ingest(cmd)
        assert await count_rows(store) == before, cmd


async def test_parents_must_exist_and_resolve(service: ArtifactService, names: str) -> None:
    data = await service.ingest(IngestVersion(names, "train", content=[1]))
    model = await service.ingest(IngestVersion(
        names, "model", content={"w": 1}, parents=(VersionRef(names, "train"),)))
    assert model.version.parents == (data.version.key,)
    children = await service.children(data.version.key)
    assert [c.key for c in children] == [model.version.key]


async def test_time_travel_by_position_folds_the_log(service: ArtifactService,
                                                     names: str) -> None:
    await service.ingest(IngestVersion(names, "tt", content=1))
    promoted = await service.promote(PromoteVersion(VersionRef(names, "tt", 1)))
    before: Any = await service.load(names, "tt", to_position=promoted.position - 1)
    after = await service.load(names, "tt", to_position=promoted.position)
    assert before.production is None
    assert after.production == 1


async def test_two_processes_with_their_own_caches_see_each_others_appends(
    store: PostgresEventStore, settings: Settings, names: str
) -> None:
    first = ArtifactService(store, max_content_bytes=settings.max_content_bytes)
    second = ArtifactService(store, max_content_bytes=settings.max_content_bytes)
    for i in range(6):
        writer = first if i % 2 == 0 else second
        result = await writer.ingest(IngestVersion(names, "shared", content={"i": i},
                                                   expected_version=i))
        assert result.version.number == i + 1
    await second.promote(PromoteVersion(VersionRef(names, "shared", 3)))
    with pytest.raises(StageRuleViolation):  # first learns of the promotion from the log
        await first.withdraw(WithdrawVersion(VersionRef(names, "shared", 3)))
    assert [v.number for v in (await first.load(names, "shared")).versions] == list(range(1, 7))
