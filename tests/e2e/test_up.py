"""`artifactlog up` as a user runs it: a real process tree on the embedded engines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from core.runtime import free_port

pytestmark = pytest.mark.slow

READY_TIMEOUT = 60.0


def artifactlog_cmd() -> list[str]:
    script = Path(sys.executable).parent / "artifactlog"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def live_processes() -> Iterator[tuple[int, str, bytes]]:
    """(pid, command line, environment) of every live process we may read."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if "State:\tZ" not in status:
            yield int(proc.name), cmdline, environ


def _uses(home: Path, cmdline: str, environ: bytes) -> bool:
    # The engines name their data directory on the command line; `up` and its worker
    # processes carry ARTIFACTLOG_HOME in their environment.
    return str(home) in cmdline or f"ARTIFACTLOG_HOME={home}\0".encode() in environ + b"\0"


def processes_using(home: Path) -> list[str]:
    """Command lines of live processes of the home directory (servers we started)."""
    return [cmdline for _, cmdline, environ in live_processes() if _uses(home, cmdline, environ)]


def pids_using(home: Path) -> list[int]:
    return [pid for pid, cmdline, environ in live_processes() if _uses(home, cmdline, environ)]


class Up:
    def __init__(self, home: Path, port: int, *args: str) -> None:
        self.home = home
        self.env = {**os.environ, "ARTIFACTLOG_HOME": str(home), "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
        for var in ("DATABASE_URL", "NATS_URL", "CLICKHOUSE_URL", "ARTIFACTLOG_URL"):
            self.env.pop(var, None)
        started = time.monotonic()
        self.proc = subprocess.Popen([*artifactlog_cmd(), "up", "--port", str(port), *args],
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.ready_seconds = time.monotonic() - started
        if "ready in" not in line:
            self.proc.kill()
            errors = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"not ready: {line!r} {errors}")
        # Nobody reads the server's pipes after the ready line, and a full pipe would block
        # the server mid-test: drain them until it exits.
        self.readers = [drain(self.proc.stdout), drain(self.proc.stderr)]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*artifactlog_cmd(), *args], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        for reader in self.readers:  # a pipe closes only once its reader reached EOF
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return code


def drain(stream: IO[str] | None) -> threading.Thread:
    """Read a pipe to its end in the background."""
    def run() -> None:
        if stream is not None:
            for _ in stream:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for_projections(up: Up, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(up.cli("status", "--json").stdout)
        if all(p["lag"] == 0 for p in status["projections"]) and len(status["projections"]) == 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"projections did not catch up: {status}")


def wait_gone(home: Path, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := processes_using(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_up_serves_demo_data_stops_cleanly_and_reuses_its_data(home: Path) -> None:
    port = free_port()
    up = Up(home, port, "--demo")
    try:
        print(f"artifactlog up ready in {up.ready_seconds:.1f}s (first start)")
        assert up.ready_seconds < 30
        history = up.cli("history", "fraud/transactions")
        assert history.returncode == 0, history.stderr
        assert "PRODUCTION" in history.stdout
        assert "DRAFT" in history.stdout
        ingested = up.cli("ingest", "e2e/notes", "-", stdin="first line\n")
        assert ingested.returncode == 0, ingested.stderr
        assert "e2e/notes@1 (v1) created" in ingested.stdout
        folder = home.parent / "folder"
        folder.mkdir()
        (folder / "a.json").write_text('{"rows": 1}')
        (folder / "b.txt").write_text("plain text")
        from_dir = up.cli("ingest", "e2e/folder", str(folder))
        assert from_dir.returncode == 0, from_dir.stderr
        assert from_dir.stdout.count(" created;") == 2
        promoted = up.cli("promote", "e2e/notes", "1", "--reason", "e2e")
        assert promoted.returncode == 0, promoted.stderr
        assert "is now PRODUCTION" in promoted.stdout
        listed = json.loads(up.cli("history", "e2e/notes", "--json").stdout)
        assert [(v["number"], v["stage"]) for v in listed] == [(1, "PRODUCTION")]
        wait_for_projections(up)
        sql = up.cli("sql", "SELECT type, count() AS n FROM events GROUP BY type ORDER BY type",
                     "--format", "json")
        assert sql.returncode == 0, sql.stderr
        assert json.loads(sql.stdout) == [{"type": "VersionIngested", "n": 7},
                                          {"type": "VersionPromoted", "n": 3}]
        rebuilt = up.cli("replay", "--projection", "analytics")
        assert "rebuilt analytics from the log: 10 events" in rebuilt.stdout, rebuilt.stderr
        refused = up.cli("sql", "DROP TABLE events")
        assert refused.returncode != 0
        assert "[VALIDATION]" in refused.stderr
    finally:
        assert up.stop(signal.SIGTERM) == 0
    assert wait_gone(home) == [], "postgres or nats-server outlived `artifactlog up`"

    again = Up(home, port, "--demo")
    try:
        history = json.loads(again.cli("history", "fraud/transactions", "--json").stdout)
        assert [v["number"] for v in history] == [1, 2]  # demo loaded once, data kept
        notes = json.loads(again.cli("history", "e2e/notes", "--json").stdout)
        assert [(v["number"], v["stage"]) for v in notes] == [(1, "PRODUCTION")]
    finally:
        assert again.stop(signal.SIGINT) == 0
    assert wait_gone(home) == []


def test_cli_refusals_are_messages_with_a_nonzero_exit(home: Path) -> None:
    up = Up(home, free_port())
    try:
        for args, stdin, expected in [
            (("ingest", "bad name/x", "-"), "x", "[VALIDATION]"),
            (("ingest", "no-slash", "-"), "x", "expected NAMESPACE/NAME"),
            (("ingest", "ns/x", "/does/not/exist"), None, "cannot read"),
            (("promote", "ns/missing", "1"), None, "[NOT_FOUND]"),
            (("history", "ns/missing"), None, "[NOT_FOUND]"),
            (("ingest", "ns/x", "-", "--metadata", "{oops"), "x", "--metadata is not valid JSON"),
        ]:
            result = up.cli(*args, stdin=stdin)
            assert result.returncode != 0, args
            assert expected in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr
    finally:
        up.stop()


def worker_pids(home: Path, timeout: float = 30.0) -> dict[str, int]:
    """The worker processes `up` started (api/workers.py), by their `run` arguments, once
    all three are there."""
    deadline = time.monotonic() + timeout
    while True:
        found = {cmdline.split(" run ", 1)[1].strip(): pid
                 for pid, cmdline, environ in live_processes()
                 if " api.cli run " in cmdline and _uses(home, cmdline, environ)}
        if len(found) == 3 or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_sigkill_of_up_takes_its_servers_down_too(home: Path) -> None:
    up = Up(home, free_port())
    assert processes_using(home)
    assert len(worker_pids(home)) == 3
    up.stop(signal.SIGKILL)
    assert wait_gone(home) == [], "children must not be orphaned"


def test_up_runs_its_workers_as_processes_and_restarts_one_that_dies(home: Path) -> None:
    up = Up(home, free_port())
    try:
        workers = worker_pids(home)
        assert sorted(workers) == ["ingest", "projection --name version_history", "relay"]
        os.kill(workers["projection --name version_history"], signal.SIGKILL)
        ingested = up.cli("ingest", "e2e/after-kill", "-", stdin="hello\n")
        assert ingested.returncode == 0, ingested.stderr
        wait_for_projections(up)  # the restarted worker projected it
        history = json.loads(up.cli("history", "e2e/after-kill", "--json").stdout)
        assert [v["number"] for v in history] == [1]
        again = worker_pids(home)
        assert again["projection --name version_history"] != workers[
            "projection --name version_history"]
        assert again["relay"] == workers["relay"]
    finally:
        assert up.stop(signal.SIGTERM) == 0
    assert wait_gone(home) == []


def test_inspection_commands_on_the_demo_data(home: Path) -> None:
    up = Up(home, free_port(), "--demo")
    try:
        wait_for_projections(up)
        mermaid = up.cli("lineage", "fraud/scorer@1", "--format", "mermaid")
        assert mermaid.returncode == 0, mermaid.stderr
        assert mermaid.stdout.startswith("graph LR")
        assert "fraud_transactions_2 --> fraud_scorer_1" in mermaid.stdout
        dot = up.cli("lineage", "fraud/transactions@2", "--direction", "down", "--format", "dot")
        assert '"fraud/transactions@2" -> "fraud/scorer@1";' in dot.stdout
        impact = up.cli("lineage", "fraud/transactions@2", "--impact")
        assert impact.stdout.strip() == "fraud/scorer@1 (v1) PRODUCTION"
        diff = json.loads(up.cli("diff", "fraud/transactions@1", "fraud/transactions@2",
                                 "--json").stdout)
        assert diff["summary"]["records"] == {"added": 1}  # the demo declares key "id"
        plain = up.cli("diff", "fraud/transactions@1", "fraud/transactions@2")
        assert "\033[" not in plain.stdout  # no colour when piped
        assert "records  added    6" in plain.stdout
        policy = up.cli("policy", "fraud/scorer",
                        '[{"type": "metadata", "expr": "metrics.auc >= 0.95"}]')
        assert policy.returncode == 0, policy.stderr
        ingested = up.cli("ingest", "fraud/scorer", "-", "--as", "json",
                          "--metadata", '{"metrics": {"auc": 0.93}}', stdin='{"w": 2}')
        assert ingested.returncode == 0, ingested.stderr
        dry = up.cli("promote", "fraud/scorer", "2", "--dry-run")
        assert dry.returncode == 3
        assert "FAIL  metadata: metrics.auc >= 0.95: 0.93 >= 0.95 does not hold" in dry.stdout
        refused = up.cli("promote", "fraud/scorer", "2")
        assert refused.returncode == 2
        assert "[POLICY]" in refused.stderr
        forced = up.cli("promote", "fraud/scorer", "2", "--override", "--reason", "hotfix")
        assert forced.returncode == 0, forced.stderr
        schema = home.parent / "scorer.schema.json"
        schema.write_text(json.dumps({"type": "object", "required": ["w"],
                                      "properties": {"w": {"type": "number"}}}))
        registered = up.cli("registry", "register", "artifact:fraud/scorer", str(schema))
        assert registered.stdout.strip() == "artifact:fraud/scorer version 1", registered.stderr
        rejected = up.cli("ingest", "fraud/scorer", "-", "--as", "json", stdin='{"w": "x"}')
        assert rejected.returncode == 2
        assert "/w: 'x' is not of type 'number'" in rejected.stderr
        listed = up.cli("registry", "rejections", "fraud", "--name", "scorer")
        assert "artifact:fraud/scorer@1  1 violation(s)" in listed.stdout
        trace = up.cli("replay", "--artifact", "fraud/transactions")
        assert trace.returncode == 0, trace.stderr
        assert [line.split()[2] for line in trace.stdout.splitlines()] == [
            "VersionIngested", "VersionIngested", "VersionPromoted"]
    finally:
        up.stop()
