"""1. Durable bulk ingest through HTTP NDJSON and the NATS ingest subject, against raw COPY.

Counted on acknowledgement: the HTTP response (or NATS reply) only comes once the versions
are committed in Postgres. Each run, interleaved so drift hits all three alike: the raw COPY
of the workload's event rows into a scratch table on the server's own Postgres, then the
same versions through ``POST /ingest/bulk`` (requests of 10,000 lines, one after another),
then through ``artifactlog.ingest`` (arrays of 100 IngestInputs, 8 requests in flight);
between them the server's projections catch up, so no backlog spills into the next figure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid

import httpx

from bench.baselines import copy_events
from bench.common import ratio_at_least
from bench.harness import Bench
from bench.payloads import Versions
from bench.server import bulk
from core.ingest_nats import INGEST_SUBJECT
from core.jetstream import connect

NAME = "ingest"
TITLE = "1. Durable bulk ingest"
BULK_LINES = 10_000  # the bulk endpoint's limit per request
NATS_GROUP = 100  # IngestInputs per request: the size of the bulk endpoint's transactions
NATS_IN_FLIGHT = 8


def workload(bench: Bench, tag: str, warmup: bool = False, scenario: str = NAME) -> Versions:
    """The bulk workload; ``scenario`` is whose sizes (and ``--size`` overrides) apply."""
    artifacts = bench.size(scenario, "artifacts", quick=400, full=1000)
    versions = bench.size(scenario, "versions", quick=2, full=100)
    return Versions(f"{tag}-{uuid.uuid4().hex[:8]}", artifacts, 1 if warmup else versions)


async def bulk_http(http: httpx.AsyncClient, versions: Versions) -> float:
    """Versions per second through POST /ingest/bulk."""
    lines = versions.ndjson()
    started = time.perf_counter()
    for start in range(0, len(lines), BULK_LINES):
        await bulk(http, lines[start:start + BULK_LINES])
    return len(lines) / (time.perf_counter() - started)


async def nats_ingest(nats_url: str, versions: Versions) -> float:
    """Versions per second through request/reply on the NATS ingest subject."""
    inputs = versions.inputs()
    payloads = [json.dumps(inputs[i:i + NATS_GROUP], separators=(",", ":")).encode()
                for i in range(0, len(inputs), NATS_GROUP)]
    # Requests in flight at once must not share artifacts, or they would conflict: with
    # round-robin order that holds while in-flight x group <= artifacts.
    slots = asyncio.Semaphore(max(1, min(NATS_IN_FLIGHT, versions.artifacts // NATS_GROUP)))
    nc = await connect(nats_url, name="bench-ingest")

    async def request(payload: bytes) -> None:
        async with slots:
            reply = json.loads((await nc.request(INGEST_SUBJECT, payload, timeout=300)).data)
        errors = [r for r in reply if "error" in r] if isinstance(reply, list) else [reply]
        if errors:
            raise RuntimeError(f"NATS ingest refused versions: {errors[:3]}")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(request(p) for p in payloads))
        return len(inputs) / (time.perf_counter() - started)
    finally:
        await nc.close()


async def run(bench: Bench) -> None:
    server = await bench.server()
    rates: dict[str, list[float]] = {"copy": [], "http": [], "nats": []}
    async with server.client() as http:
        await server.settle(http)

        async def once(warmup: bool) -> None:
            versions = workload(bench, "bulk", warmup)
            figures = {"copy": await copy_events(server.database_url, versions.events()),
                       "http": await bulk_http(http, versions)}
            await server.settle(http)
            other = dataclasses.replace(versions, namespace=f"nats-{versions.namespace}")
            figures["nats"] = await nats_ingest(server.nats_url, other)
            await server.settle(http)
            if not warmup:
                for key, value in figures.items():
                    rates[key].append(value)

        await bench.repeat(once)
    base = bench.add(NAME, "raw COPY of the same event rows (baseline)", "rows/s",
                     rates["copy"], note="COPY into a table LIKE events INCLUDING ALL on the "
                     "server's own Postgres, 1,000 rows per commit; content rows not written")
    bench.add(NAME, "HTTP POST /ingest/bulk (NDJSON)", "versions/s", rates["http"],
              goal=ratio_at_least(0.4), baseline=base)
    bench.add(NAME, f"NATS {INGEST_SUBJECT} ({NATS_GROUP} per request, "
              f"{NATS_IN_FLIGHT} in flight)", "versions/s", rates["nats"],
              goal=ratio_at_least(0.4), baseline=base)
