"""Replay and capture commands against a real `artifactlog up` on the embedded engines: they
find its Postgres and NATS through state.json, shadow rebuilds go through its API (the
process that owns chDB), and capture query runs on a throwaway engine of its own."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from core.runtime import free_port
from tests.e2e.test_up import Up, wait_for_projections

pytestmark = pytest.mark.slow


def test_replay_and_capture_commands_on_the_embedded_system(home: Path) -> None:
    up = Up(home, free_port(), "--demo")
    try:
        wait_for_projections(up)
        before = json.loads(up.cli("sql", "SELECT count() AS n FROM events",
                                   "--format", "json").stdout)
        for name in ("version_history", "analytics"):
            done = up.cli("replay", "--projection", name, "--shadow")
            assert done.returncode == 0, done.stderr
            assert "built in shadow tables, then switched" in done.stdout
        after = json.loads(up.cli("sql", "SELECT count() AS n FROM events",
                                  "--format", "json").stdout)
        assert after == before
        history = up.cli("history", "fraud/transactions")
        assert "PRODUCTION" in history.stdout, history.stderr

        published = up.cli("replay", "--publish", "dev.e2e", "--namespace", "fraud")
        assert published.returncode == 0, published.stderr
        assert "(core NATS)" in published.stdout

        directory = home.parent / "capture"
        captured = up.cli("capture", "--until-head", "--dir", str(directory), "--content")
        assert captured.returncode == 0, captured.stderr
        query = up.cli("capture", "query", "--dir", str(directory), "--format", "json",
                       "SELECT count() AS n, countIf(type = 'VersionIngested') AS ingests"
                       " FROM events")
        assert query.returncode == 0, query.stderr
        counted = json.loads(query.stdout)[0]
        assert counted["n"] == before[0]["n"]
        contents = up.cli("capture", "query", "--dir", str(directory), "--format", "json",
                          "SELECT count() AS n FROM contents WHERE data IS NOT NULL")
        assert json.loads(contents.stdout)[0]["n"] == counted["ingests"]
        refused = up.cli("capture", "query", "--dir", str(directory),
                         "SELECT * FROM file('/etc/passwd', 'CSV')")
        assert refused.returncode == 2
        assert "file() is not allowed" in refused.stderr
    finally:
        assert up.stop(signal.SIGTERM) == 0


