"""The benchmark suite of issue 7: artifactlog next to the raw limits of its engines.

    python -m bench [SCENARIO ...] [--quick] [--runs N] [--size SCENARIO.NAME=N] [--no-markdown]
                    [--out DIR]

Starts its own embedded engines (PostgreSQL, nats-server, chDB) in a temporary home, and a
real `artifactlog up` with a home of its own for the HTTP scenarios; runs every scenario
``runs`` times after a warm-up; writes bench/results/*.json and the tables in BENCHMARKS.md.
Exits non-zero only if a scenario crashed, never because a goal was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.common import ForeignLoad
from bench.harness import Bench
from bench.machine import engine_versions, machine
from bench.scenarios import RUN_ORDER, load
from core.settings import Settings
from core.stack import Stack

QUICK_RUNS = 3
FULL_RUNS = 3


def run(scenarios: list[str] | None, quick: bool, *, runs: int | None = None,
        sizes: dict[str, int] | None = None, out: Path = report.RESULTS) -> dict[str, Any]:
    """Run the chosen scenarios (all when None) and return the results (what latest.json
    holds)."""
    for name in scenarios or ():
        load(name)  # an unknown name fails before any engine starts
    chosen = [name for name in RUN_ORDER if scenarios is None or name in scenarios]
    started, wall = datetime.now(UTC), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="artifactlog-bench-") as tmp:
        home = Path(tmp)
        # Settings built here, not from the environment: DATABASE_URL and friends must not
        # point the suite at someone's servers.
        with Stack(Settings(home=home / "engines")) as engines:
            bench = Bench(quick=quick, home=home, engines=engines,
                          runs=runs or (QUICK_RUNS if quick else FULL_RUNS),
                          overrides=dict(sizes or {}))
            results: dict[str, Any] = {
                "mode": "quick" if quick else "full", "started_at": started.isoformat(),
                "runs": bench.runs, "warmups": bench.warmups, "scenarios": {}}
            try:
                asyncio.run(_run(bench, chosen, results, out))
            finally:
                bench.close()
    results["seconds"] = time.monotonic() - wall
    return results


async def _run(bench: Bench, chosen: list[str], results: dict[str, Any], out: Path) -> None:
    results.update(machine=machine(), engines=await engine_versions(bench.engines))
    for name in chosen:
        module = load(name)
        print(f"{module.TITLE}", flush=True)
        first, started = len(bench.metrics), time.monotonic()
        error = None
        with ForeignLoad() as foreign:
            try:
                await module.run(bench)
            except Exception as exc:  # one broken scenario must not hide the others' figures
                traceback.print_exc()
                error = f"{type(exc).__name__}: {exc}"[:300]
        results["scenarios"][name] = {
            "title": module.TITLE, "sizes": bench.sizes.get(name, {}),
            "code": results["machine"]["code"],
            "run_at": datetime.now(UTC).isoformat(), "error": error,
            "seconds": time.monotonic() - started, "foreign_cpu": foreign.share,
            "metrics": [m.to_json() for m in bench.metrics[first:]]}
        print(f"  ({time.monotonic() - started:.0f}s; other processes used "
              f"{foreign.share:.0%} of the CPUs)", flush=True)
        report.write_latest(results, out)  # a run stopped halfway keeps what it measured


def parse_size(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"expected SCENARIO.NAME=N, got {text!r}")
    return key, int(value.replace("_", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(RUN_ORDER)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run in under 3 minutes")
    parser.add_argument("--runs", type=int, help="measured runs per scenario (default 3)")
    parser.add_argument("--size", type=parse_size, action="append", default=[],
                        metavar="SCENARIO.NAME=N", help="override one workload size")
    parser.add_argument("--no-markdown", action="store_true",
                        help="write the JSON only, leave BENCHMARKS.md alone")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write latest.json, {quick,full}.json and BENCHMARKS.md into DIR "
                             "instead of bench/results/ and the repository's BENCHMARKS.md "
                             "(CI smoke runs)")
    args = parser.parse_args(argv)
    # The output is the figures: the workers' INFO lines (partition taken over, relay
    # resuming...) would bury them, also when `artifactlog` has set INFO up already.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    unknown = set(args.scenarios) - set(RUN_ORDER)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(RUN_ORDER)}")
    out = args.out.resolve() if args.out else report.RESULTS
    markdown = report.MARKDOWN if args.out is None else out / "BENCHMARKS.md"
    results = run(args.scenarios or None, args.quick, runs=args.runs, sizes=dict(args.size),
                  out=out)
    report.save(results, None if args.no_markdown else markdown, out)
    failed = [n for n, s in results["scenarios"].items() if s["error"]]
    print(f"done in {results['seconds']:.0f}s; results in {out / 'latest.json'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
