"""Requests per second against a running `artifactlog up` on the embedded engines.

    python -m bench.api [--seconds 10] [--clients 1,8,32]

Starts its own server in a temporary home, then for each client count measures single
GraphQL ingests (each a new version: durable in Postgres when acknowledged) and a history
query (the first 100 versions of a 1,000-version artifact with stage, label, digest and
parents), reporting requests/s, p50 and p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from core.runtime import free_port

INGEST = """mutation($input: IngestInput!) { ingest(input: $input) { position } }"""
HISTORY = """query($ns: String!, $name: String!) { artifact(namespace: $ns, name: $name) {
  versions(first: 100) { totalCount edges { node { number label stage digest
  parents { number } } } } } }"""


async def load(url: str, token: str, clients: int, seconds: float, body: Any
               ) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, headers={
            "Authorization": f"Bearer {token}"}) as http:
        async def client(index: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = await http.post("/graphql", json=body(index, n))
                latencies.append(time.monotonic() - started)
                payload = response.json()
                if response.status_code != 200 or payload.get("errors"):
                    raise RuntimeError(f"request failed: {response.text[:300]}")
                n += 1
        started = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {"requests_per_second": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def ingest_body(index: int, n: int) -> dict[str, Any]:
    return {"query": INGEST, "variables": {"input": {
        "namespace": "bench", "name": f"single-{index}", "content": {"i": n, "pad": "x" * 400}}}}


def history_body(index: int, n: int) -> dict[str, Any]:
    return {"query": HISTORY, "variables": {"ns": "bench", "name": "history"}}


async def seed_history(url: str, token: str, versions: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60, headers={
            "Authorization": f"Bearer {token}"}) as http:
        lines = "\n".join(json.dumps({"namespace": "bench", "name": "history",
                                      "content": {"v": i}}) for i in range(versions))
        response = await http.post("/ingest/bulk", content=lines.encode(),
                                   headers={"content-type": "application/x-ndjson"})
        if response.status_code == 404:  # no bulk endpoint: one by one
            for i in range(versions):
                await http.post("/graphql", json={"query": INGEST, "variables": {"input": {
                    "namespace": "bench", "name": "history", "content": {"v": i}}}})


def start_server(home: str, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "ARTIFACTLOG_HOME": home, "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
    for var in ("DATABASE_URL", "NATS_URL", "CLICKHOUSE_URL"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "up", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if "ready in" not in proc.stdout.readline():
        raise RuntimeError("server did not start")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--output", type=Path, default=Path("bench/api.json"))
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        proc = start_server(home, port)
        try:
            url = f"http://127.0.0.1:{port}"
            token = json.loads((Path(home) / "state.json").read_text())["token"]
            asyncio.run(seed_history(url, token, 1000))
            for clients in counts:
                for name, body in (("ingest", ingest_body), ("history", history_body)):
                    figures = asyncio.run(load(url, token, clients, args.seconds, body))
                    results[f"{name}@{clients}"] = figures
                    print(f"{name:<8} {clients:>3} clients: {figures['requests_per_second']:8.0f}"
                          f" req/s  p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f}"
                          " ms", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
