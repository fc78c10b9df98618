"""8. Memory of every process of `artifactlog up`, idle and during a bulk ingest.

Groups: the Python server (API, the analytics projection and chDB in-process), each worker
process it runs (relay, NATS ingest worker, version-history projection: api/workers.py),
postgres (postmaster and backends, summed by PSS so shared buffers count once) and
nats-server. Idle is sampled
for a few seconds with nothing to do; then scenario 1's HTTP bulk workload runs (same sizes)
while a thread samples every 250 ms, until the projections have caught up. Growth is the
peak minus idle. The issue's 1,000,000-version ingest would take hours at today's bulk rate,
so the default is scenario 1's size; ``--size memory.versions=1000`` asks for the million.
"""

from __future__ import annotations

import asyncio

from bench.common import MB, MemorySampler, at_most
from bench.harness import Bench
from bench.scenarios.ingest import bulk_http, workload

NAME = "memory"
TITLE = "8. Memory of `artifactlog up`"
LABELS = {"server": "Python API server (API, analytics projection, chDB)",
          "postgres": "postgres, all its processes (PSS)", "nats-server": "nats-server"}


async def idle(pid: int, seconds: float) -> dict[str, int]:
    """Median of each group over ``seconds`` of doing nothing."""
    sampler = MemorySampler(pid)
    samples = []
    for _ in range(max(1, int(seconds / 0.25))):
        samples.append(await asyncio.to_thread(sampler.sample))
        await asyncio.sleep(0.25)
    return {g: sorted(s.get(g, 0) for s in samples)[len(samples) // 2] for g in samples[-1]}


async def run(bench: Bench) -> None:
    server = await bench.server()
    quiet = bench.size(NAME, "idle_seconds", quick=1, full=5)
    figures: dict[str, list[float]] = {}
    rates: list[float] = []  # what the memory costs or saves in speed (GOMEMLIMIT, for one)
    async with server.client() as http:
        await server.settle(http)

        async def once(warmup: bool) -> None:
            before = await idle(server.pid, quiet)
            with MemorySampler(server.pid) as sampler:
                rate = await bulk_http(http, workload(bench, "memory", warmup, scenario=NAME))
                await server.settle(http)
            if warmup:
                return
            rates.append(rate)
            for group in before:
                figures.setdefault(f"{group} idle", []).append(before[group] / MB)
                figures.setdefault(f"{group} peak", []).append(sampler.peaks[group] / MB)
                figures.setdefault(f"{group} growth", []).append(
                    (sampler.peaks[group] - before[group]) / MB)

        await bench.repeat(once)
    bench.add(NAME, "bulk ingest while sampled", "versions/s", rates)
    for group in sorted({f.rsplit(" ", 1)[0] for f in figures}, key=_order):
        label = LABELS.get(group, group)
        bench.add(NAME, f"{label}: idle", "MB", figures[f"{group} idle"])
        bench.add(NAME, f"{label}: peak during the bulk ingest", "MB",
                  figures[f"{group} peak"])
        bench.add(NAME, f"{label}: growth", "MB", figures[f"{group} growth"],
                  goal=at_most(200))


def _order(group: str) -> tuple[int, str]:
    """The API server first, its workers next, then the engines."""
    return (0 if group == "server" else 1 if group.startswith("worker") else 2, group)
