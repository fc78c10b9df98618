"""BENCHMARKS.md's generated table says how many runs each scenario's figures come from: a
subset run with another --runs, merged into the mode's results, keeps its own count."""

from __future__ import annotations

from typing import Any

from bench.report import render


def scenario(title: str, samples: list[float]) -> dict[str, Any]:
    metric = {"name": "rate", "unit": "x/s", "samples": samples, "median": samples[0],
              "min": min(samples), "max": max(samples), "baseline": None, "ratio": None,
              "goal": None, "met": None, "note": None}
    return {"title": title, "sizes": {"events": 10}, "code": "abc1234",
            "run_at": "2026-11-26T20:00:00+00:00", "seconds": 5.0, "foreign_cpu": 0.0,
            "error": None, "metrics": [metric]}


def test_each_scenario_shows_its_own_run_count() -> None:
    results = {"mode": "full", "runs": 1, "warmups": 1,
               "machine": {"cpus": 2, "cpu_model": "cpu", "memory_gb": 8, "python": "3.11",
                           "platform": "linux"},
               "engines": {"postgresql": "17", "nats-server": "2.12", "chdb": "3"},
               "scenarios": {"a": scenario("1. three", [1.0, 2.0, 3.0]),
                             "b": scenario("2. one", [4.0])}}
    rows = {line.split("|")[1]: line for line in render(results).splitlines()
            if line.startswith("| **")}
    assert len(rows) == 2
    three, one = (next(r for h, r in rows.items() if title in h) for title in ("three", "one"))
    assert "events 10; 3 runs 2026-11-26T20:00 on abc1234" in three
    assert "events 10; 1 run 2026-11-26T20:00 on abc1234" in one
    assert "median of its scenario's runs" in render(results)
