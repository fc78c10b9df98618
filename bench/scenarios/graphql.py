"""2. Single ingests and promotions over GraphQL: requests/s, p50 and p99 by client count.

Closed loop: each client sends its next request when the previous one is answered, for a
fixed time, into an artifact of its own (new per run, so each run starts from the same
history length). The load generator shares the machine (and its 2 cores) with the server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx

from bench.common import Goal, Latencies, at_least, at_most, closed_loop
from bench.harness import Bench
from bench.payloads import content
from bench.server import Server, bulk, graphql

NAME = "graphql"
TITLE = "2. GraphQL single ingests and promotions"
CLIENTS = (1, 8, 32)
PROMOTE_VERSIONS = 10
INGEST = "mutation($input: IngestInput!) { ingest(input: $input) { position } }"
PROMOTE = "mutation($ref: VersionRefInput!) { promote(ref: $ref) { position } }"
GOALS: dict[tuple[str, int], Goal] = {("req/s", 8): at_least(600),
                                      ("p99", 1): at_most(8)}


Load = Callable[[httpx.AsyncClient, float], Awaitable[Latencies]]


async def ingest_load(clients: int, http: httpx.AsyncClient, seconds: float) -> Latencies:
    namespace = f"gql-{uuid.uuid4().hex[:8]}"

    async def request(client: int, n: int) -> None:
        await graphql(http, INGEST, {"input": {
            "namespace": namespace, "name": f"c{client}", "kind": "dataset",
            "content": content(client, n + 1)}})

    return await closed_loop(clients, seconds, request)


async def promote_load(http: httpx.AsyncClient, seconds: float) -> Latencies:
    """One client promoting the versions of one artifact in turn (each a real change of the
    production pointer, every tenth a rollback to an earlier version)."""
    namespace = f"promote-{uuid.uuid4().hex[:8]}"
    await bulk(http, [_line(namespace, n) for n in range(1, PROMOTE_VERSIONS + 1)])

    async def request(client: int, n: int) -> None:
        ref: dict[str, Any] = {"namespace": namespace, "name": "model",
                               "number": 1 + n % PROMOTE_VERSIONS}
        await graphql(http, PROMOTE, {"ref": ref})

    return await closed_loop(1, seconds, request)


def _line(namespace: str, number: int) -> bytes:
    return json.dumps({"namespace": namespace, "name": "model", "kind": "model",
                       "content": content(0, number)}).encode()


async def run(bench: Bench) -> None:
    server = await bench.server()
    seconds = bench.size(NAME, "seconds", quick=1, full=10)
    for clients in CLIENTS:
        runs = await _measure(bench, server, clients, partial(ingest_load, clients), seconds)
        label = f"ingest, {clients} client{'s' if clients > 1 else ''}"
        bench.add(NAME, f"{label}: requests/s", "req/s", [r.rate for r in runs],
                  goal=GOALS.get(("req/s", clients)))
        for q in (50, 99):
            bench.add(NAME, f"{label}: p{q}", "ms", [r.ms(q) for r in runs],
                      goal=GOALS.get((f"p{q}", clients)))
    runs = await _measure(bench, server, 1, promote_load, seconds)
    bench.add(NAME, "promote, 1 client: p50", "ms", [r.ms(50) for r in runs],
              goal=at_most(10))
    bench.add(NAME, "promote, 1 client: p99", "ms", [r.ms(99) for r in runs])


async def _measure(bench: Bench, server: Server, clients: int, load: Load, seconds: float
                   ) -> list[Latencies]:
    async with server.client(connections=clients) as http:
        await server.settle(http)

        async def once(warmup: bool) -> Latencies:
            result = await load(http, min(seconds, 1) if warmup else seconds)
            await server.settle(http)  # the projections' backlog must not slow the next run
            return result

        return await bench.repeat(once)
