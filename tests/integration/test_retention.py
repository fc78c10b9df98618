"""Retention against the real event log and content store: purging old never-promoted drafts
(time driven through ``now``, never slept), bytes shared by digest kept while an unpurged
version uses them, diffs refusing purged versions, archiving, and bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.commands import IngestVersion, PromoteVersion, VersionRef
from core.comparison import DiffService
from core.errors import ContentGone, NotFound, StageRuleViolation, ValidationError
from core.eventlog_pg import PostgresEventStore
from core.retention import Retention
from core.retention_pg import RetentionStore
from core.services import ArtifactService

pytestmark = pytest.mark.anyio
LATER = timedelta(days=31)


@pytest.fixture
def retention(service: ArtifactService, store: PostgresEventStore) -> Retention:
    return Retention(service, RetentionStore(store.pool), store.contents)


async def seed(service: ArtifactService, ns: str) -> tuple[str, str]:
    """ns/model: v1 {"w": 1} draft, v2 unique draft, v3 promoted. ns/shared: v1 has the
    same bytes as model@1 and is promoted. Returns (shared digest, unique digest)."""
    shared = await service.ingest(IngestVersion(ns, "model", content={"w": 1}))
    unique = await service.ingest(IngestVersion(ns, "model", content={"w": f"{ns}-2"}))
    await service.ingest(IngestVersion(ns, "model", content={"w": 3}))
    await service.promote(PromoteVersion(VersionRef(ns, "model", 3), actor="ana"))
    await service.ingest(IngestVersion(ns, "shared", content={"w": 1}))
    await service.promote(PromoteVersion(VersionRef(ns, "shared", 1), actor="ana"))
    return shared.version.digest, unique.version.digest


async def test_purge_keeps_shared_bytes_and_diffs_say_purged(
        retention: Retention, service: ArtifactService, store: PostgresEventStore,
        names: str) -> None:
    shared, unique = await seed(service, names)
    await retention.set_policy(names, 30, "admin")
    before = (await service.load(names, "model")).stream_version

    # Not old enough yet: nothing.
    assert (await retention.apply(namespace=names)).purged == []

    dry = await retention.apply(now=datetime.now(UTC) + LATER, dry_run=True, namespace=names)
    assert [(str(p.key), p.digest) for p in dry.purged] == [
        (f"{names}/model@1", shared), (f"{names}/model@2", unique)]
    assert (dry.digests_deleted, dry.digests_kept) == ([unique], [shared])
    assert (await service.load(names, "model")).stream_version == before  # nothing written
    assert await store.contents.exists(unique)

    report = await retention.apply(now=datetime.now(UTC) + LATER, namespace=names,
                                   actor="janitor")
    assert [p.key.number for p in report.purged] == [1, 2]
    assert (report.digests_deleted, report.digests_kept) == ([unique], [shared])
    state = await service.load(names, "model")
    assert [v.purged for v in state.versions] == [True, True, False]
    purge_events = (await store.load_stream(names, "model"))[-2:]
    assert [(e.type, e.payload["number"], e.metadata["actor"]) for e in purge_events] == [
        ("ContentPurged", 1, "janitor"), ("ContentPurged", 2, "janitor")]
    assert not await store.contents.exists(unique)
    assert await store.contents.get(shared) == b'{"w":1}'  # shared@1 still uses these bytes
    shared_v1 = (await service.load(names, "shared")).versions[0]
    assert await service.content_of(shared_v1) == b'{"w":1}'

    diffs = DiffService(service)
    for old, new in ((1, 3), (3, 2)):
        with pytest.raises(ContentGone, match="purged") as gone:
            await diffs.diff(VersionRef(names, "model", old), VersionRef(names, "model", new))
        assert gone.value.code == "CONTENT_PURGED"
    with pytest.raises(ContentGone):
        await service.content_of(state.versions[0])
    with pytest.raises(StageRuleViolation, match="purged"):
        await service.promote(PromoteVersion(VersionRef(names, "model", 2)))

    again = await retention.apply(now=datetime.now(UTC) + LATER, namespace=names)
    assert (again.purged, again.digests_deleted) == ([], [])  # idempotent


async def test_last_unpurged_user_releases_the_bytes(
        retention: Retention, service: ArtifactService, store: PostgresEventStore,
        names: str) -> None:
    """Two drafts share bytes: the bytes go when both are purged, in the same run."""
    for name in ("a", "b"):
        await service.ingest(IngestVersion(names, name, content={"both": names}))
    digest = (await service.load(names, "a")).versions[0].digest
    await retention.set_policy(names, 1, "admin")
    report = await retention.apply(now=datetime.now(UTC) + timedelta(days=2),
                                   namespace=names)
    assert (len(report.purged), report.digests_deleted) == (2, [digest])
    assert not await store.contents.exists(digest)


async def test_archive_and_unarchive_are_events(retention: Retention, service: ArtifactService,
                                                store: PostgresEventStore, names: str) -> None:
    await service.ingest(IngestVersion(names, "old", content={"x": 1}))
    position = await retention.archive(names, "old", archived=True, reason="stale",
                                       actor="ana")
    assert await retention.archive(names, "old", archived=True, reason=None,
                                   actor="ana") == position  # already archived: no event
    await retention.archive(names, "old", archived=False, reason=None, actor="ana")
    types = [e.type for e in await store.load_stream(names, "old")]
    assert types == ["VersionIngested", "ArtifactArchived", "ArtifactUnarchived"]
    with pytest.raises(NotFound):
        await retention.archive(names, "missing", archived=True, reason=None, actor="ana")


@pytest.mark.parametrize("days", [-1, 0, 10**9, True])
async def test_bad_days_are_refused_and_nothing_written(retention: Retention, names: str,
                                                        days: int) -> None:
    with pytest.raises(ValidationError, match="draftDays"):
        await retention.set_policy(names, days, "admin")
    assert await retention.policies(names) == []
    with pytest.raises(NotFound, match="no retention policy"):
        await retention.apply(namespace=names)
    with pytest.raises(ValidationError):
        await retention.set_policy("bad/ns", 3, "admin")


async def test_the_maintenance_loop_applies_policies(retention: Retention,
                                                     service: ArtifactService,
                                                     names: str) -> None:
    await service.ingest(IngestVersion(names, "draft", content={"old": names}))
    await retention.set_policy(names, 3, "admin")
    stop = asyncio.Event()
    task = asyncio.create_task(retention.run_periodically(
        stop, interval_seconds=60, clock=lambda: datetime.now(UTC) + timedelta(days=4)))
    try:
        for _ in range(200):
            if (await service.load(names, "draft")).versions[0].purged:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    state = await service.load(names, "draft")
    assert state.versions[0].purged
