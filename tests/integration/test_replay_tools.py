"""Replay for debugging: re-publishing a slice of history to a NATS subject (core NATS and
JetStream), and running users' transforms over an artifact's versions with a diff of their
outputs, in process and through the `artifactlog replay` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from core.commands import IngestVersion
from core.errors import ValidationError
from core.jetstream import POSITION_HEADER
from core.replay_publish import EVENT_ID_HEADER, publish_slice
from core.replay_slice import HistorySlice
from core.replay_transform import TransformReplay, load_transform
from core.settings import Settings
from projections.rebuild import rebuild
from projections.version_history import VersionHistoryProjection
from tests.integration.streams import System, open_system, read_stream


async def wait_until(predicate: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


async def ingest_mixed(system: System, count: int) -> None:
    for i in range(count):
        await system.service.ingest(IngestVersion(
            ("fraud", "ml")[i % 2], f"a{i % 3}", content={"i": i}))


async def log(system: System) -> list[dict[str, Any]]:
    return [e.to_json() for e in await system.store.read_after(0, 10_000)]


async def checkpoints(system: System) -> list[tuple[Any, ...]]:
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT projection, partition, position, updated_at"
                                 " FROM projection_checkpoints ORDER BY 1, 2")
        return [tuple(row) for row in await cur.fetchall()]


async def test_publish_sends_exactly_the_slice_in_order_paced_and_touches_no_checkpoint(
    system: System,
) -> None:
    await ingest_mixed(system, 30)
    await rebuild(VersionHistoryProjection(system.pool), system.store, system.settings)
    before = await checkpoints(system)
    stream_before = (await system.js.stream_info(system.settings.stream_name)).state.messages
    events = await log(system)
    subject = f"dev.{uuid.uuid4().hex}"
    received: list[Msg] = []

    async def collect(msg: Msg) -> None:
        received.append(msg)

    await system.nats.subscribe(subject, cb=collect)
    chosen = HistorySlice(from_position=4, to_position=27, namespace="fraud")
    result = await publish_slice(system.pool, system.nats, system.settings, subject, chosen,
                                 rate=40)
    expected = [e for e in events if 4 <= e["position"] <= 27 and e["namespace"] == "fraud"]
    await wait_until(lambda: len(received) >= len(expected), within=10)
    assert (result.events, result.jetstream) == (len(expected), False)
    assert [json.loads(m.data) for m in received] == expected
    assert [(m.headers or {})[EVENT_ID_HEADER] for m in received] == [
        e["eventId"] for e in expected]
    assert [int((m.headers or {})[POSITION_HEADER]) for m in received] == [
        e["position"] for e in expected]
    # 12 messages at 40/s: the last goes out no sooner than 11/40 s after the first
    assert result.seconds >= (len(expected) - 1) / 40 * 0.9
    assert await checkpoints(system) == before
    stream_after = (await system.js.stream_info(system.settings.stream_name)).state.messages
    assert stream_after == stream_before


async def test_publish_to_a_jetstream_subject_by_time_and_artifact(system: System) -> None:
    await ingest_mixed(system, 18)
    events = await log(system)
    name = f"RC_{uuid.uuid4().hex[:10]}"
    prefix = f"rc{uuid.uuid4().hex[:10]}"
    await system.js.add_stream(StreamConfig(name=name, subjects=[f"{prefix}.>"]))
    since = events[5]["recordedAt"]
    chosen = HistorySlice(since=datetime.fromisoformat(since), namespace="ml", name="a1")
    result = await publish_slice(system.pool, system.nats, system.settings, f"{prefix}.feed",
                                 chosen)
    stored = await read_stream(system.js, name, f"{prefix}.>")
    expected = [e for e in events if e["recordedAt"] >= since
                and (e["namespace"], e["name"]) == ("ml", "a1")]
    assert result.jetstream
    assert result.events == len(expected) > 0
    assert [m["position"] for m in stored] == [e["position"] for e in expected]
    await system.js.delete_stream(name)


async def test_publish_refuses_the_events_stream_and_wildcards(system: System) -> None:
    for subject in (f"{system.settings.subject_prefix}.0.ns.a", "dev.*", "dev..x", ""):
        with pytest.raises(ValidationError):
            await publish_slice(system.pool, system.nats, system.settings, subject,
                                HistorySlice())
    with pytest.raises(ValidationError, match="time zone"):
        HistorySlice(since=datetime.fromisoformat("2026-11-26T10:00:00"))


def run_cli(settings: Settings, *args: str, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.environment(), "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
async def test_the_replay_publish_command(system: System) -> None:
    await ingest_mixed(system, 9)
    subject = f"dev.{uuid.uuid4().hex}"
    received: list[Msg] = []

    async def collect(msg: Msg) -> None:
        received.append(msg)

    await system.nats.subscribe(subject, cb=collect)
    await system.nats.flush()
    done = await asyncio.to_thread(run_cli, system.settings, "replay", "--publish", subject,
                                   "--artifact", "fraud/a0", "--rate", "500")
    assert done.returncode == 0, done.stderr
    await asyncio.sleep(0.2)
    expected = [e["position"] for e in await log(system)
                if (e["namespace"], e["name"]) == ("fraud", "a0")]
    assert [json.loads(m.data)["position"] for m in received] == expected
    assert f"published {len(expected)} events to {subject} (core NATS)" in done.stdout


PIPELINE_A = '''
def clean(rows):
    return [{"id": r["id"], "v": r["v"] * 2} for r in rows]
'''
PIPELINE_B = '''
def clean(rows, version):
    if any(r["v"] < 0 for r in rows):
        raise ValueError(f"negative value in {version['label']}")
    return [{"id": r["id"], "v": r["v"] * 2 if r["v"] < 10 else r["v"]} for r in rows]
'''


async def ingest_versions(system: System, namespace: str) -> None:
    for rows in ([{"id": 1, "v": 1}, {"id": 2, "v": 2}],
                 [{"id": 1, "v": 3}, {"id": 2, "v": 20}],
                 [{"id": 1, "v": -1}],
                 [{"id": 1, "v": 4}]):
        await system.service.ingest(IngestVersion(namespace, "rows", content=rows,
                                                  metadata={"key": "id"}))


async def test_transforms_diffed_version_by_version_errors_reported_per_version(
    system: System, tmp_path: Path, names: str,
) -> None:
    (tmp_path / "pipe_a.py").write_text(PIPELINE_A)
    (tmp_path / "pipe_b.py").write_text(PIPELINE_B)
    await ingest_versions(system, names)
    first = load_transform(f"{tmp_path / 'pipe_a.py'}:clean")
    second = load_transform(f"{tmp_path / 'pipe_b.py'}:clean")
    runs = await TransformReplay(system.service).run(names, "rows", first, second)
    assert [r.number for r in runs] == [1, 2, 3, 4]
    assert [r.differs for r in runs] == [False, True, False, False]
    assert runs[1].summary == {"records": {"changed": 1}}
    assert runs[2].errors == ["ValueError: negative value in v3"]
    assert runs[3].transform.output == [{"id": 1, "v": 8}]  # the run went on
    alone = await TransformReplay(system.service).run(names, "rows", first)
    assert alone[0].transform.output == [{"id": 1, "v": 2}, {"id": 2, "v": 4}]

    done = await asyncio.to_thread(
        run_cli, system.settings, "replay", "--artifact", f"{names}/rows", "--transform",
        "pipe_a:clean", "--against", "pipe_b:clean", "--json", cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # an error on some version
    report = json.loads(done.stdout)
    assert (report["differences"], report["errors"]) == (1, 1)
    assert report["versions"][2]["errors"] == ["ValueError: negative value in v3"]
    assert "Traceback" not in done.stdout + done.stderr
    same = await asyncio.to_thread(
        run_cli, system.settings, "replay", "--artifact", f"{names}/rows", "--transform",
        "pipe_a:clean", "--against", "pipe_a:clean", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "4 versions; 0 differing; 0 with errors" in same.stdout


@pytest.mark.parametrize(("spec", "message"), [
    ("pipe_a", "is not MODULE:FUNCTION"),
    ("no_such_module_here:clean", "no module named"),
    ("pipe_a:missing", "has no function 'missing'"),
    ("broken:clean", "cannot import 'broken': ZeroDivisionError"),
])
async def test_a_bad_transform_spec_is_a_clear_usage_error(
    settings: Settings, tmp_path: Path, spec: str, message: str,
) -> None:
    (tmp_path / "pipe_a.py").write_text(PIPELINE_A)
    (tmp_path / "broken.py").write_text("1 / 0\n")
    done = await asyncio.to_thread(run_cli, settings, "replay", "--artifact", "x/rows",
                                   "--transform", spec, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")



@pytest.mark.parametrize(("words", "message"), [
    (["--artifact", "a/b", "--rate", "3"], "--rate only goes with --publish"),
    (["--artifact", "a/b", "--shadow"], "--shadow only goes with --projection"),
    (["--artifact", "a/b", "--against", "m:f"], "--against only goes with --transform"),
    (["--publish", "dev.x", "--since", "2026-11-26T10:00"], "--since needs a time zone"),
    (["--projection", "analytics", "--shadow", "--from-position", "3"], "drop --from-position"),
    ([], "replay needs --projection, --publish, --transform or --artifact"),
])
def test_replay_options_out_of_place_are_refused(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli import main

    assert main(["replay", *words]) == 2
    assert message in capsys.readouterr().err
