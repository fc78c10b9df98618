"""4. Freshness: under a steady ingest rate, the time from acknowledgement to visible.

A producer sends ``rate`` versions/s as one ``POST /ingest/bulk`` every 50 ms (open loop:
each request leaves on schedule, at most 8 in flight, so a slow answer does not lower the
offered rate unless the server falls that far behind). For each acknowledged version we note
when it became visible: in the version-history read model when that projection's checkpoint
for the version's partition reached its position (read from the server's Postgres every
10 ms: the checkpoint moves in the same transaction as the rows), and in ClickHouse when
``max(position)`` of its partition in the analytics ``events`` table did (through ``/sql``
every 50 ms). "Lag does not grow" is read as: the p50 of the last quarter of the run is
within 100 ms of the p50 of the first quarter.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psycopg

from bench.common import at_most, percentile
from bench.harness import Bench
from bench.payloads import Versions
from bench.server import Server, bulk
from core.jetstream import partition_of
from core.settings import Settings

NAME = "freshness"
TITLE = "4. Freshness: acknowledged -> visible"
TICK = 0.05
IN_FLIGHT = 8
ARTIFACTS = 1000
CLICKHOUSE_SQL = ("SELECT partition, max(position) FROM events WHERE position >= {low}"
                  " GROUP BY partition")


@dataclass
class Sink:
    """Acknowledged versions not yet visible in one read model, per partition by position."""

    pending: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    seen: list[tuple[float, float]] = field(default_factory=list)  # (acked at, latency)

    def acked(self, partition: int, position: int, at: float) -> None:
        heapq.heappush(self.pending.setdefault(partition, []), (position, at))

    def reached(self, partition: int, position: int, now: float) -> None:
        queue = self.pending.get(partition, [])
        while queue and queue[0][0] <= position:
            _, at = heapq.heappop(queue)
            self.seen.append((at, max(0.0, now - at)))

    def lowest(self) -> int | None:
        return min((q[0][0] for q in self.pending.values() if q), default=None)

    def quarters(self) -> tuple[float, float]:
        ordered = sorted(self.seen)
        q = max(1, len(ordered) // 4)
        return (percentile((s for _, s in ordered[:q]), 50),
                percentile((s for _, s in ordered[-q:]), 50))


async def produce(http: httpx.AsyncClient, versions: Versions, rate: int,
                  sinks: list[Sink], partitions: int) -> float:
    """Offer ``rate`` versions/s; returns the rate actually acknowledged."""
    lines, per_tick = versions.ndjson(), max(1, round(rate * TICK))
    slots, started = asyncio.Semaphore(IN_FLIGHT), time.monotonic()

    async def send(batch: list[bytes]) -> None:
        async with slots:
            results = await bulk(http, batch)
        now = time.monotonic()
        for r in results:
            for sink in sinks:
                sink.acked(partition_of(r["namespace"], r["name"], partitions), r["position"],
                           now)

    tasks = []
    for i, start in enumerate(range(0, len(lines), per_tick)):
        await asyncio.sleep(max(0.0, started + i * TICK - time.monotonic()))
        tasks.append(asyncio.create_task(send(lines[start:start + per_tick])))
    await asyncio.gather(*tasks)
    return len(lines) / (time.monotonic() - started)


async def watch_history(server: Server, sink: Sink, stop: asyncio.Event) -> None:
    async with await psycopg.AsyncConnection.connect(server.database_url,
                                                     autocommit=True) as conn:
        while not stop.is_set() or sink.lowest() is not None:
            rows = await (await conn.execute(
                "SELECT partition, position FROM projection_checkpoints"
                " WHERE projection = 'version_history'")).fetchall()
            now = time.monotonic()
            for partition, position in rows:
                sink.reached(int(partition), int(position), now)
            await asyncio.sleep(0.01)


async def watch_clickhouse(http: httpx.AsyncClient, sink: Sink, stop: asyncio.Event) -> None:
    while not stop.is_set() or sink.lowest() is not None:
        low = sink.lowest()
        if low is not None:
            response = await http.post("/sql", json={"sql": CLICKHOUSE_SQL.format(low=low)})
            response.raise_for_status()
            now = time.monotonic()
            for partition, position in response.json()["rows"]:
                sink.reached(int(partition), int(position), now)
        await asyncio.sleep(0.05)


async def one_run(server: Server, http: httpx.AsyncClient, rate: int, seconds: float
                  ) -> dict[str, float]:
    versions = Versions(f"fresh-{uuid.uuid4().hex[:8]}", ARTIFACTS,
                        max(1, round(rate * seconds / ARTIFACTS)))
    history, clickhouse, stop = Sink(), Sink(), asyncio.Event()
    watchers = [asyncio.create_task(watch_history(server, history, stop)),
                asyncio.create_task(watch_clickhouse(http, clickhouse, stop))]
    try:
        achieved = await produce(http, versions, rate, [history, clickhouse],
                                 Settings.from_env().partitions)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*watchers), timeout=300)
    finally:
        for task in watchers:
            task.cancel()
    figures = {"achieved": achieved}
    for label, sink in (("history", history), ("clickhouse", clickhouse)):
        latencies = [s for _, s in sink.seen]
        first, last = sink.quarters()
        figures |= {f"{label} p50": 1000 * percentile(latencies, 50),
                    f"{label} p99": 1000 * percentile(latencies, 99),
                    f"{label} growth": 1000 * (last - first)}
    return figures


async def run(bench: Bench) -> None:
    rate = bench.size(NAME, "rate", quick=200, full=1000)
    seconds = bench.size(NAME, "seconds", quick=4, full=60)
    server = await bench.server()
    samples: dict[str, list[float]] = {}
    async with server.client(connections=IN_FLIGHT + 2) as http:
        await server.settle(http)

        async def once(warmup: bool) -> None:
            figures = await one_run(server, http, rate, min(seconds, 2) if warmup else seconds)
            await server.settle(http)
            if not warmup:
                for key, value in figures.items():
                    samples.setdefault(key, []).append(value)

        await bench.repeat(once)
    bench.add(NAME, f"acknowledged rate (offered {rate:,}/s)", "versions/s",
              samples["achieved"])
    for label, title, p99 in (("history", "version history", 500),
                              ("clickhouse", "ClickHouse", 1000)):
        bench.add(NAME, f"{title}: p50", "ms", samples[f"{label} p50"])
        bench.add(NAME, f"{title}: p99", "ms", samples[f"{label} p99"], goal=at_most(p99))
        bench.add(NAME, f"{title}: lag growth (p50 last quarter - first)", "ms",
                  samples[f"{label} growth"], goal=at_most(100, "does not grow (≤ 100 ms)"))
