"""The Python client (``artifactlog.Client`` / ``AsyncClient``) against a real `artifactlog up`.

Every scenario is written once as a coroutine and runs twice: with the AsyncClient, and with
the blocking Client behind coroutine wrappers, so both clients meet the same assertions.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

import core.errors
from artifactlog import (
    ArtifactlogError,
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    Stage,
    StageRuleViolation,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from core.runtime import free_port
from tests.e2e.test_up import Up, pids_using

pytestmark = pytest.mark.slow

PROJECTIONS = 2  # version_history and analytics


@dataclass
class Server:
    home: Path
    url: str
    token: str
    read_token: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("client") / "home"
    try:
        up = Up(home, free_port())
        try:
            state = json.loads((home / "state.json").read_text())
            created = up.cli("token", "create", "reader", "--scope", "read")
            assert created.returncode == 0, created.stderr
            yield Server(home, state["api_url"], state["token"],
                         created.stdout.strip().splitlines()[-1])
        finally:
            code = up.stop(signal.SIGTERM)
    finally:
        for pid in pids_using(home):  # never leave servers behind, even on failure
            os.kill(pid, signal.SIGKILL)
    assert code == 0, "artifactlog up did not stop cleanly on SIGTERM"


class Blocking:
    """The blocking Client behind coroutine methods, so one async test body checks both."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def connect(kind: str, url: str | None = None, token: str | None = None
                  ) -> AsyncIterator[Any]:
    if kind == "sync":
        with Client(url, token) as client:
            yield Blocking(client)
    else:
        async with AsyncClient(url, token) as aclient:
            yield aclient


@pytest.fixture
def api(kind: str, server: Server) -> Callable[..., Any]:
    """Opens a client of this test's kind; admin token unless another one is given."""
    def open_client(token: str | None = None) -> Any:
        return connect(kind, server.url, token or server.token)
    return open_client


@pytest.mark.anyio
async def test_ingest_history_artifact_and_read_your_writes(api: Any, names: str) -> None:
    async with api() as client:
        results = [await client.ingest(names, "table", content={"rows": i},
                                       metadata={"i": i}, kind="dataset", producer="e2e")
                   for i in range(1, 6)]
        assert [r.version.number for r in results] == [1, 2, 3, 4, 5]
        assert all(r.created for r in results)
        last = results[-1]
        assert last.version.label == "v5"
        assert last.version.stage is Stage.DRAFT
        assert last.version.metadata == {"i": 5}
        assert last.version.producer == "e2e"
        assert isinstance(last.version.created_at, datetime)
        assert last.position == last.version.position

        # Read-your-writes: the read waits until the read model has this position.
        artifact = await client.artifact(names, "table", min_position=last.position)
        assert artifact is not None
        assert (artifact.kind, artifact.version_count) == ("dataset", 5)
        assert artifact.latest == last.version
        assert artifact.production is None

        history = await client.history(names, "table", page_size=2)  # three pages
        assert [v.number for v in history] == [1, 2, 3, 4, 5]
        assert history[-1] == last.version
        assert await client.history(names, "table", stage="production") == []

        same = await client.ingest(names, "table", content={"rows": 5})
        assert (same.created, same.version.number) == (False, 5)  # identical content
        forced = await client.ingest(names, "table", content={"rows": 5}, force=True)
        assert (forced.created, forced.version.number) == (True, 6)
        key = f"{names}-run-1"  # idempotency keys are global, not per artifact
        keyed = await client.ingest(names, "table", content={"rows": 7}, idempotency_key=key)
        again = await client.ingest(names, "table", content={"rows": 7}, idempotency_key=key)
        assert (again.created, again.version) == (False, keyed.version)

        text = await client.ingest(names, "notes", text="hello\n")
        blob = await client.ingest(names, "blob", data=b"\x00\x01\xff",
                                   media_type="application/octet-stream")
        assert text.version.size == 6
        assert (blob.version.size, blob.version.media_type) == (3, "application/octet-stream")
        assert await client.artifact(names, "missing") is None


@pytest.mark.anyio
async def test_promote_withdraw_and_stage_rules(api: Any, names: str) -> None:
    async with api() as client:
        for i in range(3):
            await client.ingest(names, "model", content={"w": i})
        first = await client.promote(f"{names}/model@1", reason="validated")
        assert (first.version.number, first.version.stage, first.previous) == (
            1, Stage.PRODUCTION, None)
        second = await client.promote(f"{names}/model@v2")  # by label
        assert second.version.number == 2
        assert second.previous is not None
        assert second.previous.number == 1  # reported as it was before: PRODUCTION
        before = await client.history(names, "model", min_position=second.position)
        assert [v.stage for v in before] == [Stage.SUPERSEDED, Stage.PRODUCTION, Stage.DRAFT]

        withdrawn = await client.withdraw((names, "model", 1), reason="bad data")
        assert withdrawn.version.stage is Stage.WITHDRAWN
        with pytest.raises(StageRuleViolation):
            await client.withdraw({"namespace": names, "name": "model", "number": 2})
        with pytest.raises(StageRuleViolation):
            await client.promote(withdrawn.version)  # a Version is a ref too

        latest = await client.promote(f"{names}/model")  # no version: the latest
        assert latest.version.number == 3
        artifact = await client.artifact(names, "model", min_position=latest.position)
        assert artifact is not None
        assert artifact.production is not None
        assert artifact.production.number == 3
        stages = [v.stage for v in await client.history(names, "model",
                                                        min_position=latest.position)]
        assert stages == [Stage.WITHDRAWN, Stage.SUPERSEDED, Stage.PRODUCTION]


@pytest.mark.anyio
async def test_diff_of_two_json_versions_pages_through_changes(api: Any, names: str) -> None:
    async with api() as client:
        await client.ingest(names, "config", content={"a": 1, "b": 2, "c": [1, 2]},
                            metadata={"owner": "x"})
        await client.ingest(names, "config", content={"a": 1, "b": 3, "c": [1, 2, 3], "d": 4},
                            metadata={"owner": "y"})
        diff = await client.diff(f"{names}/config@1", f"{names}/config@2", page_size=1)
        assert not diff.identical
        assert (diff.before.number, diff.after.number) == (1, 2)
        assert [(c.section, c.op, c.path, c.before, c.after) for c in diff.changes] == [
            ("metadata", "replace", "/owner", "x", "y"),
            ("content", "replace", "/b", 2, 3),
            ("content", "add", "/c/2", None, 3),
            ("content", "add", "/d", None, 4),
        ]
        counted = sum(n for ops in diff.summary.values() for n in ops.values())
        assert counted == len(diff.changes)
        assert (await client.diff(f"{names}/config@2", f"{names}/config")).identical

        await client.ingest(names, "rows", content=[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
        await client.ingest(names, "rows", content=[{"id": 1, "v": "z"}, {"id": 3, "v": "c"}])
        keyed = await client.diff((names, "rows", 1), (names, "rows", 2), key="id")
        assert sorted((c.op, c.path) for c in keyed.changes if c.section == "records") == [
            ("added", "3"), ("changed", "1"), ("removed", "2")]


@pytest.mark.anyio
async def test_lineage_of_a_parent_and_its_child(api: Any, names: str) -> None:
    async with api() as client:
        parent = await client.ingest(names, "features", content={"f": [1, 2]})
        child = await client.ingest(names, "scorer", content={"w": 0.5},
                                    parents=[f"{names}/features@1"])
        # Lineage is read from the read model and takes no minPosition: wait through a read
        # that does (the edge is projected with the child's event).
        assert await client.artifact(names, "scorer", min_position=child.position)
        assert len({parent.version, child.version, child.version}) == 2  # hashable
        up = await client.lineage(child.version)
        assert up.root == child.version
        assert [str(n) for n in up.nodes] == [f"{names}/scorer@1", f"{names}/features@1"]
        assert [(e.parent, e.child) for e in up.edges] == [(parent.version, child.version)]
        down = await client.lineage((names, "features", 1), direction="downstream", depth=1)
        assert [(str(e.parent), str(e.child)) for e in down.edges] == [
            (f"{names}/features@1", f"{names}/scorer@1")]
        assert (await client.lineage(parent.version)).edges == []  # nothing upstream


@pytest.mark.anyio
async def test_refusals_are_the_core_error_classes(api: Any, names: str) -> None:
    async with api() as client:
        await client.ingest(names, "data", content=[1])
        with pytest.raises(Conflict, match="version") as conflict:
            await client.ingest(names, "data", content=[2], expected_version=0)
        assert isinstance(conflict.value, core.errors.Conflict)
        assert conflict.value.code == "CONFLICT"
        with pytest.raises(NotFound):
            await client.promote(f"{names}/nothing@1")
        with pytest.raises(NotFound):
            await client.history(names, "nothing")
        with pytest.raises(NotFound):
            await client.promote(f"{names}/data@9")
        with pytest.raises(ValidationError):
            await client.ingest(names, "bad name", content=1)  # refused by the server
        for bad in ("no-slash", f"{names}/data@", "a/b/c", (names,), {"namespace": names}):
            with pytest.raises(InvalidArgument, match="ref"):
                await client.promote(bad)
        with pytest.raises(ValueError, match="exactly one"):  # also a ValidationError
            await client.ingest(names, "data", content=1, text="1")
        with pytest.raises(ValidationError, match="page_size"):
            await client.history(names, "data", page_size=0)
        with pytest.raises(InvalidArgument, match="stage"):
            await client.history(names, "data", stage="LIVE")
        with pytest.raises(ArtifactlogError) as unknown:  # a code this client has no class for
            await client.execute("query { nothing }")
        assert type(unknown.value) is ArtifactlogError
        assert unknown.value.code == "GRAPHQL_VALIDATION"
        status = await client.execute("query { status { headPosition } }")
        assert status["status"]["headPosition"] >= 1


@pytest.mark.anyio
async def test_tokens_unauthenticated_and_forbidden(api: Any, server: Server,
                                                    names: str) -> None:
    async with api("al_" + "x" * 43) as stranger:
        with pytest.raises(Unauthenticated):
            await stranger.status()
        with pytest.raises(Unauthenticated):
            await stranger.sql("SELECT 1")
    async with api() as admin:
        written = await admin.ingest(names, "data", content={"x": 1})
    async with api(server.read_token) as reader:
        with pytest.raises(Forbidden):
            await reader.ingest(names, "data", content={"x": 2})
        with pytest.raises(Forbidden):
            await reader.promote(f"{names}/data@1")
        found = await reader.artifact(names, "data", min_position=written.position)
        assert found is not None
        assert found.latest == written.version
        assert (await reader.sql("SELECT 1 AS one")).records() == [{"one": 1}]


@pytest.mark.anyio
async def test_sql_on_the_analytics_tables(api: Any, names: str) -> None:
    async with api() as client:
        for i in range(3):
            await client.ingest(names, "metrics", content={"i": i}, kind="dataset")
        await client.promote(f"{names}/metrics@2")
        # Analytics are eventually consistent: SQL sees the writes once no projection lags.
        for _ in range(150):
            status = await client.status()
            if status.caught_up and len(status.projections) == PROJECTIONS:
                break
            await anyio.sleep(0.2)
        else:
            pytest.fail(f"projections did not catch up: {status}")
        assert status.head_position >= 4
        assert all(p.parked == 0 for p in status.projections)
        result = await client.sql(
            f"SELECT type, count() AS n FROM events WHERE namespace = '{names}' "
            "GROUP BY type ORDER BY type")
        assert result.columns == ["type", "n"]
        assert len(result.types) == 2
        assert result.rows == [["VersionIngested", 3], ["VersionPromoted", 1]]
        versions = await client.sql(
            f"SELECT number, stage FROM versions FINAL WHERE namespace = '{names}' "
            "ORDER BY number")
        assert versions.records() == [{"number": 1, "stage": "DRAFT"},
                                      {"number": 2, "stage": "PRODUCTION"},
                                      {"number": 3, "stage": "DRAFT"}]
        with pytest.raises(ValidationError):
            await client.sql("DROP TABLE events")


@pytest.mark.anyio
async def test_url_and_token_from_the_home_state(kind: str, server: Server,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.delenv("ARTIFACTLOG_URL", raising=False)
    monkeypatch.delenv("ARTIFACTLOG_TOKEN", raising=False)
    monkeypatch.setenv("ARTIFACTLOG_HOME", str(server.home))
    async with connect(kind) as client:
        assert (await client.status()).head_position >= 0
    monkeypatch.setenv("ARTIFACTLOG_URL", server.url + "/graphql")  # as GraphiQL shows it
    monkeypatch.setenv("ARTIFACTLOG_TOKEN", server.read_token)
    async with connect(kind) as client:
        with pytest.raises(Forbidden):
            await client.ingest("ns", "x", content=1)

    monkeypatch.delenv("ARTIFACTLOG_URL")
    monkeypatch.setenv("ARTIFACTLOG_HOME", str(tmp_path))  # no state.json: nothing running
    with pytest.raises(ValidationError, match="ARTIFACTLOG_URL"):
        Client()
    nobody = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    async with connect(kind, nobody, "al_token") as client:
        with pytest.raises(Unavailable, match="cannot reach"):
            await client.status()
    assert time.monotonic() - started < 10
