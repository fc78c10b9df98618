"""Version schemes through the service, against the real event log."""

from __future__ import annotations

import pytest

from core.commands import IngestVersion, VersionRef
from core.errors import ValidationError
from core.eventlog_pg import PostgresEventStore
from core.services import ArtifactService

pytestmark = pytest.mark.anyio


async def labels(service: ArtifactService, ns: str, name: str) -> list[str]:
    return [v.label for v in (await service.load(ns, name)).versions]


async def test_semver_derives_bumps_and_honours_explicit_ones(service: ArtifactService,
                                                              names: str) -> None:
    rows = [{"id": 1, "amount": 2.5}]
    await service.ingest(IngestVersion(names, "ds", content=rows, scheme="semver"))
    await service.ingest(IngestVersion(names, "ds", content=[{"id": 1, "amount": 3.5}]))
    await service.ingest(IngestVersion(names, "ds", content=[{"id": 1, "amount": 3.5,
                                                              "currency": "EUR"}]))
    await service.ingest(IngestVersion(names, "ds", content=[{"id": 2, "currency": "EUR"}]))
    await service.ingest(IngestVersion(names, "ds", content=[{"id": 3}], bump="minor"))
    assert await labels(service, names, "ds") == ["1.0.0", "1.0.1", "1.1.0", "2.0.0", "2.1.0"]


async def test_scheme_changes_later_are_events_and_labels_stay_unique(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    await service.ingest(IngestVersion(names, "m", content=1))
    await service.set_version_scheme(names, "m", "template", "run-{meta.run}", "ana")
    await service.ingest(IngestVersion(names, "m", content=2, metadata={"run": "a"}))
    with pytest.raises(ValidationError, match="already taken"):
        await service.ingest(IngestVersion(names, "m", content=3, metadata={"run": "a"}))
    assert await labels(service, names, "m") == ["v1", "run-a"]
    types = [e.type for e in await store.load_stream(names, "m")]
    assert types == ["VersionIngested", "VersionSchemeSet", "VersionIngested"]
    state = await service.load(names, "m")
    assert state.resolve(VersionRef(names, "m", label="run-a")).number == 2
