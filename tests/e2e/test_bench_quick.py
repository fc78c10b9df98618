"""CI's smoke run of the benchmark suite (issue 7): `artifactlog bench --quick` must not crash.

It asserts that the suite ran every scenario and measured numbers, never how fast: benchmarks
are not timed assertions. This is the slowest test (about two minutes: every scenario at its
quick size, engines and a real `artifactlog up` included), kept because CI is where a change
that breaks a scenario must show up. Its output goes to a temporary directory: the
repository's BENCHMARKS.md and bench/results/ stay untouched.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_up import artifactlog_cmd

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = {"ingest", "graphql", "relay", "freshness", "projections", "reads", "diff",
             "memory"}


def test_bench_quick_runs_every_scenario_and_measures(tmp_path: Path) -> None:
    out = tmp_path / "bench-out"
    markdown_before = (REPO / "BENCHMARKS.md").read_bytes()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "NATS_URL", "CLICKHOUSE_URL", "ARTIFACTLOG_URL")}
    done = subprocess.run([*artifactlog_cmd(), "bench", "--quick", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    latest = json.loads((out / "latest.json").read_text())
    assert latest["mode"] == "quick"
    assert set(latest["scenarios"]) == SCENARIOS
    for name, scenario in latest["scenarios"].items():
        assert scenario["error"] is None, (name, scenario["error"])
        assert scenario["metrics"], name
        for metric in scenario["metrics"]:
            samples = metric["samples"]
            assert len(samples) == latest["runs"], (name, metric["name"])
            assert all(isinstance(s, int | float) and math.isfinite(s) for s in samples), \
                (name, metric["name"], samples)
            if metric["baseline"] is not None:  # a ratio needs a measured, positive baseline
                assert metric["baseline"]["median"] > 0, (name, metric["name"])
                assert metric["ratio"] is not None
                assert metric["ratio"] > 0
    # Throughputs are positive: a scenario that moved nothing did not measure anything.
    rates = [m for s in latest["scenarios"].values() for m in s["metrics"]
             if m["unit"].endswith("/s")]
    assert rates
    assert all(m["median"] > 0 for m in rates)

    table = (out / "BENCHMARKS.md").read_text()
    assert "<!-- bench:quick:start -->" in table
    assert "Durable bulk ingest" in table
    assert (out / "quick.json").exists()
    assert (REPO / "BENCHMARKS.md").read_bytes() == markdown_before  # the repo's file untouched
