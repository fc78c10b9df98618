"""6. Reads over HTTP on an artifact with many versions, and lineage on a large graph.

Seeds (through the bulk endpoint, then waits for the projections): ``reads/big`` with
``versions`` versions, each with a parent in ``reads/source`` and one of them promoted; and a
lineage graph of ``graph_artifacts`` x ``graph_versions`` versions where each version has the
same-numbered version of the previous artifact as parent. Each run sends every query
``requests`` times in a row from one client (or as many times as fit in
``seconds_per_query``, at least 5) and takes the p50; the full history is timed
page by page (1,000 per page, the largest page allowed).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bench.common import Goal, Latencies, at_most
from bench.harness import Bench
from bench.payloads import Versions, content
from bench.server import bulk, graphql

NAME = "reads"
TITLE = "6. Reads on a long history"
NS = "reads"
FIELDS = "number label stage digest parents { namespace name number }"
PAGE = f"""query($after: String, $first: Int!) {{ artifact(namespace: "{NS}", name: "big") {{
  versions(first: $first, after: $after) {{ totalCount pageInfo {{ hasNextPage endCursor }}
  edges {{ node {{ {FIELDS} }} }} }} }} }}"""
PRODUCTION = f"""{{ artifact(namespace: "{NS}", name: "big") {{
  production {{ number label stage digest }} }} }}"""
BY_LABEL = f"""query($label: String!) {{ artifact(namespace: "{NS}", name: "big") {{
  version(label: $label) {{ number label stage digest }} }} }}"""
AS_OF = f"""query($at: DateTime!) {{ artifact(namespace: "{NS}", name: "big", asOf: $at) {{
  latest {{ number label stage }} production {{ number }} }} }}"""
LINEAGE = """query($ref: VersionRefInput!) { lineage(ref: $ref, direction: UPSTREAM, depth: 10)
  { nodes { namespace name number } edges { from { number } to { number } } } }"""
CREATED = f"""query($n: Int!) {{ artifact(namespace: "{NS}", name: "big") {{
  version(number: $n) {{ createdAt }} }} }}"""


def line(item: dict[str, Any]) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode()


async def seed(http: httpx.AsyncClient, versions: int, graph: Versions) -> None:
    await bulk(http, [line({"namespace": NS, "name": "source", "content": content(-1, n)})
                      for n in range(1, 11)])
    big = [line({"namespace": NS, "name": "big", "kind": "dataset", "content": content(0, n),
                 "parents": [{"namespace": NS, "name": "source", "number": 1 + n % 10}]})
           for n in range(1, versions + 1)]
    for lines in (big, graph.ndjson()):
        for start in range(0, len(lines), 10_000):  # the bulk endpoint's limit per request
            await bulk(http, lines[start:start + 10_000])
    await graphql(http, """mutation($ref: VersionRefInput!) { promote(ref: $ref) {
        position } }""", {"ref": {"namespace": NS, "name": "big", "number": versions - 1}})


async def latency(http: httpx.AsyncClient, requests: int, budget: float, query: str,
                  variables: dict[str, Any] | None = None) -> float:
    """p50 in ms of ``requests`` identical requests one after another, or of as many as fit
    in ``budget`` seconds (at least 5): a slow query must not stretch a run to many minutes."""
    result, deadline = Latencies(), time.monotonic() + budget
    for n in range(requests):
        if n >= 5 and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        await graphql(http, query, variables)
        result.seconds.append(time.perf_counter() - started)
    return result.ms(50)


async def full_history(http: httpx.AsyncClient) -> float:
    """Seconds to page through every version, 1,000 at a time."""
    started, after = time.perf_counter(), None
    while True:
        page = (await graphql(http, PAGE, {"first": 1000, "after": after})
                )["artifact"]["versions"]
        if not page["pageInfo"]["hasNextPage"]:
            return time.perf_counter() - started
        after = page["pageInfo"]["endCursor"]


async def run(bench: Bench) -> None:
    versions = bench.size(NAME, "versions", quick=2_000, full=10_000)
    graph = Versions("lineage", bench.size(NAME, "graph_artifacts", quick=100, full=1000),
                     bench.size(NAME, "graph_versions", quick=10, full=100), lineage=True)
    requests = bench.size(NAME, "requests", quick=10, full=200)
    budget = bench.size(NAME, "seconds_per_query", quick=2, full=15)
    server = await bench.server()
    async with server.client(connections=1) as http:
        await seed(http, versions, graph)
        await server.settle(http)
        middle = (await graphql(http, CREATED, {"n": versions // 2}))["artifact"]["version"]
        queries: dict[str, tuple[str, dict[str, Any] | None, Goal | None]] = {
            "history first page (100, with stage/label/digest/parents)":
                (PAGE, {"first": 100}, at_most(10)),
            "history, 1,000 versions in one request": (PAGE, {"first": 1000}, at_most(40)),
            "production version": (PRODUCTION, None, at_most(3)),
            "version by label": (BY_LABEL, {"label": f"v{versions // 2}"}, at_most(3)),
            "asOf time travel (folded from the log, half the history)":
                (AS_OF, {"at": middle["createdAt"]}, at_most(20)),
            f"lineage upstream depth 10 ({len(graph):,}-version graph)":
                (LINEAGE, {"ref": {"namespace": graph.namespace,
                                   "name": f"a{graph.artifacts - 1}",
                                   "number": graph.versions}}, at_most(20)),
        }
        samples: dict[str, list[float]] = {name: [] for name in [*queries, "full"]}

        async def once(warmup: bool) -> None:
            n = max(3, requests // 10) if warmup else requests
            figures = {name: await latency(http, n, budget, query, variables)
                       for name, (query, variables, _) in queries.items()}
            figures["full"] = await full_history(http)
            if not warmup:
                for name, value in figures.items():
                    samples[name].append(value)

        await bench.repeat(once)
    for name, (_, _, goal) in queries.items():
        bench.add(NAME, f"{name}: p50", "ms", samples[name], goal=goal)
    bench.add(NAME, f"full history paged ({versions:,} versions, 1,000 per page)", "s",
              samples["full"])
