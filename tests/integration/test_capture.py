"""Capture (core/capture.py): the log as Hive-partitioned Parquet files, resumable after a
kill -9 of a real `artifactlog capture` process without gaps or duplicate rows, and queried
with ClickHouse SQL (core/capture_sql.py) that still refuses file()."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from core import capture_manifest
from core.capture import Capture
from core.capture_sql import EXAMPLE_QUERY, CaptureQuery
from core.clickhouse import ClickHouse
from core.commands import IngestVersion
from core.errors import NotFound, ValidationError
from core.settings import Settings
from tests.integration.streams import System, open_system
from tests.integration.workload import append_interleaved, history

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


def captured(directory: Path, table: str = "events") -> list[dict[str, Any]]:
    """Every row of the capture's files, partition columns included, by position."""
    dataset = ds.dataset(directory / table, format="parquet", partitioning="hive")
    return sorted(dataset.to_table().to_pylist(), key=lambda row: row["position"])


async def log_rows(system: System) -> list[tuple[int, str, str]]:
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT position, namespace, event_id::text FROM events"
                                 " ORDER BY position")
        return [tuple(row) for row in await cur.fetchall()]


async def ingest(system: System, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await system.service.ingest(IngestVersion(
            ("fraud", "ml")[i % 2], f"a{i % 3}", content={"i": i, "rows": [i, i + 1]}))


async def test_capture_writes_hive_partitions_and_resumes_where_it_stopped(
    system: System, tmp_path: Path,
) -> None:
    await ingest(system, 12)
    capture = Capture(system.pool, system.store, tmp_path, content=True, batch_size=5)
    first = await capture.run_once()
    assert (first.events, first.position) == (12, 12)
    await ingest(system, 7)
    second = await capture.run_once()
    assert (second.events, second.position) == (7, 19)
    assert await capture.run_once() == capture_manifest_result(19)
    rows = captured(tmp_path)
    assert [(r["position"], r["namespace"], r["event_id"]) for r in rows] == await log_rows(
        system)
    assert {str(r["date"]) for r in rows} == {f"{r['recorded_at']:%Y-%m-%d}" for r in rows}
    manifest = capture_manifest.load(tmp_path)
    assert manifest is not None
    assert sorted(manifest.files) == parquet_files(tmp_path)
    contents = captured(tmp_path, "contents")
    assert len(contents) == 19
    for row in contents[:3]:
        assert row["data"] == await system.store.get_content(row["digest"])
    with pytest.raises(ValidationError, match="with --content"):
        Capture(system.pool, system.store, tmp_path, content=False).open()


def parquet_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*.parquet"))


def capture_manifest_result(position: int) -> Any:
    from core.capture import CaptureResult

    return CaptureResult(position, 0, 0)


async def test_files_of_an_uncommitted_batch_are_removed_and_rewritten(
    system: System, tmp_path: Path,
) -> None:
    await ingest(system, 6)
    capture = Capture(system.pool, system.store, tmp_path, batch_size=4)
    await capture.run_once(until=4)
    # What a kill between writing a batch's files and committing the manifest leaves:
    committed = set(capture_manifest.load(tmp_path).files)  # type: ignore[union-attr]
    stray = tmp_path / "events" / "date=2026-01-01" / "namespace=fraud"
    stray.mkdir(parents=True)
    for name in ("part-000000000005-000000000006.parquet", "part-x.parquet.tmp"):
        (stray / name).write_bytes(b"half a file")
    result = await capture.run_once()
    assert set(result.removed) == {str((stray / n).relative_to(tmp_path)) for n in (
        "part-000000000005-000000000006.parquet", "part-x.parquet.tmp")}
    assert committed < set(capture_manifest.load(tmp_path).files)  # type: ignore[union-attr]
    assert [r["position"] for r in captured(tmp_path)] == [1, 2, 3, 4, 5, 6]


def uncommitted(directory: Path, manifest: capture_manifest.Manifest) -> list[str]:
    """Data files (finished or being written) that the manifest does not name."""
    return [str(p.relative_to(directory)) for p in (directory / "events").rglob("*")
            if p.is_file() and str(p.relative_to(directory)) not in manifest.files]


def cli(settings: Settings, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **settings.environment(), "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "api.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
async def test_a_killed_capture_process_resumes_without_gaps_or_duplicates(
    system: System, tmp_path: Path, figures: dict[str, Any],
) -> None:
    total = await append_interleaved(system, history(100, 100))
    directory = tmp_path / "capture"
    proc = cli(system.settings, "capture", "--dir", str(directory), "--batch-size", "250")
    # Kill it the moment a batch's file is on disk but not yet in the manifest (the window a
    # crash leaves files behind in) once 500 events are in, or at 2000 if no poll catches one.
    deadline = time.monotonic() + 60
    while (manifest := capture_manifest.load(directory)) is None or (
            manifest.position < 2000 and not (
                manifest.position >= 500 and uncommitted(directory, manifest))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the capture made no progress"
        await asyncio.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    killed_at = capture_manifest.load(directory)
    assert killed_at is not None
    left_behind = uncommitted(directory, killed_at)
    assert 0 < killed_at.position < total, "the kill should land mid-capture"
    resumed = cli(system.settings, "capture", "--dir", str(directory), "--until-head",
                  "--batch-size", "250")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    figures.update(events=total, killed_at=killed_at.position, left_behind=left_behind,
                   resumed=out.strip())
    if left_behind:
        assert f"removed {len(left_behind)} uncommitted file(s)" in out
    positions = [r["position"] for r in captured(directory)]
    assert positions == list(range(1, total + 1))  # every event once: no gap, no duplicate
    query = cli(system.settings, "capture", "query", "--dir", str(directory),
                "SELECT count() AS events, uniqExact(event_id) AS ids FROM events",
                "--format", "csv")
    out, err = query.communicate(timeout=60)
    assert query.returncode == 0, err
    assert out.splitlines() == ["events,ids", f"{total},{total}"]


@pytest.fixture
async def engine(chdb_path: Path) -> AsyncIterator[ClickHouse]:
    clickhouse = ClickHouse(f"chdb://{chdb_path}", database=f"c_{uuid.uuid4().hex[:12]}")
    yield clickhouse
    await clickhouse.command(f"DROP DATABASE IF EXISTS {clickhouse.database}")
    await clickhouse.close()


async def test_clickhouse_sql_over_the_captured_files(
    system: System, tmp_path: Path, engine: ClickHouse,
) -> None:
    query = CaptureQuery(engine, tmp_path)
    with pytest.raises(NotFound, match="nothing is captured"):
        await query.run("SELECT count() FROM events")
    await ingest(system, 9)
    await Capture(system.pool, system.store, tmp_path, batch_size=4).run_once()
    result = await query.run(EXAMPLE_QUERY)
    assert result.columns == ["date", "namespace", "type", "events", "last_position"]
    rows = await log_rows(system)
    expected: dict[str, list[int]] = {}
    for position, namespace, _ in rows:
        expected.setdefault(namespace, []).append(position)
    assert [(r[1], r[2], r[3], r[4]) for r in result.rows] == [
        (ns, "VersionIngested", len(p), max(p)) for ns, p in sorted(expected.items())]
    await ingest(system, 2)  # a capture still running: the next query sees the new files
    await Capture(system.pool, system.store, tmp_path, batch_size=4).run_once()
    assert (await query.run("SELECT count() FROM events")).rows == [[11]]
    for refused in ("SELECT * FROM file('/etc/passwd', 'CSV')",
                    "SELECT file('/etc/passwd')",
                    "INSERT INTO events SELECT * FROM events",
                    "DROP TABLE events"):
        with pytest.raises(ValidationError):
            await query.run(refused)


def test_the_readme_shows_the_tested_capture_query() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"```sql\n{EXAMPLE_QUERY}\n```" in readme


@pytest.mark.slow
async def test_the_capture_role_follows_the_log(system: System, tmp_path: Path) -> None:
    await ingest(system, 5)
    settings = system.settings.with_overrides(capture_dir=tmp_path / "role",
                                              capture_interval_seconds=0.2)
    proc = cli(settings, "run", "capture")
    try:
        for expected in (5, 8):
            deadline = time.monotonic() + 30
            while (m := capture_manifest.load(tmp_path / "role")) is None or (
                    m.position < expected):
                assert proc.poll() is None, proc.communicate()
                if time.monotonic() > deadline:
                    proc.terminate()
                    raise AssertionError(f"the capture role did not follow the log: "
                                         f"{proc.communicate()}")
                await asyncio.sleep(0.1)
            if expected == 5:
                await ingest(system, 3, start=5)  # a running capture picks up new events
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert [r["position"] for r in captured(tmp_path / "role")] == list(range(1, 9))
