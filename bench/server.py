"""A real `artifactlog up` for the HTTP scenarios: its own home, embedded engines and port.

It is started exactly as a user starts it (the CLI, as a child process), so the figures
include uvicorn, strawberry, auth, and the relay and projection workers `up` runs beside the
API (worker processes of their own, api/workers.py; the analytics projection inside the API
process, which owns chDB).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from core.runtime import DATABASE, free_port

ROOT = Path(__file__).resolve().parent.parent
STATUS = "{ status { headPosition projections { name position lag } } }"


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def token(self) -> str:
        return str(self.state["token"])

    @property
    def database_url(self) -> str:
        """The server's own embedded Postgres (the baselines use the very same engine)."""
        return f"postgresql://postgres@127.0.0.1:{self.state['postgres_port']}/{DATABASE}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.state['nats_port']}"

    def start(self, timeout: float = 120.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ARTIFACTLOG_HOME": str(self.home),
               "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
        for var in ("DATABASE_URL", "NATS_URL", "CLICKHOUSE_URL", "ARTIFACTLOG_URL",
                    "ARTIFACTLOG_TOKEN", "ARTIFACTLOG_PORT"):
            env.pop(var, None)  # embedded engines of its own, whatever the shell says
        log = (self.home / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        # `up` writes api_url into state.json once it serves, after the admin token
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.home / "server.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"artifactlog up did not start:\n{tail}")
            time.sleep(0.1)
        self._wait_for_status(deadline)

    def _wait_for_status(self, deadline: float) -> None:
        """`up` reports ready before the analytics projection has created its ClickHouse
        tables, and until then `status` fails (INTERNAL); the scenarios all rely on it."""
        with httpx.Client(base_url=self.url, timeout=30, headers={
                "Authorization": f"Bearer {self.token}"}) as http:
            while True:
                body = http.post("/graphql", json={"query": STATUS}).json()
                if not body.get("errors"):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"status keeps failing: {body['errors']}")
                time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            self.state = json.loads((self.home / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        return bool(self.state.get("api_url") and self.state.get("token"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: `up` stops its engines in order
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, connections: int = 8, timeout: float = 120.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=timeout,
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections),
            headers={"Authorization": f"Bearer {self.token}"})

    async def settle(self, http: httpx.AsyncClient, within: float = 600.0) -> None:
        """Wait until every projection has applied the whole log, so one measurement's
        backlog does not load the next."""
        deadline = time.monotonic() + within
        while True:
            status = (await graphql(http, STATUS))["status"]
            if all(p["lag"] == 0 for p in status["projections"]):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"projections did not catch up within {within}s: {status}")
            await asyncio.sleep(0.2)


async def graphql(http: httpx.AsyncClient, query: str,
                  variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a GraphQL document; any error fails the benchmark (a failed request must never
    be counted as a fast one)."""
    response = await http.post("/graphql", json={"query": query, "variables": variables or {}})
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL request failed ({response.status_code}): "
                           f"{response.text[:500]}")
    return dict(body["data"])


async def bulk(http: httpx.AsyncClient, lines: list[bytes]) -> list[dict[str, Any]]:
    """POST /ingest/bulk; returns one result per line, failing on any refused line."""
    response = await http.post("/ingest/bulk", content=b"\n".join(lines),
                               headers={"content-type": "application/x-ndjson"})
    body = response.json()
    if response.status_code != 200 or body.get("failed"):
        raise RuntimeError(f"bulk ingest failed ({response.status_code}): "
                           f"{response.text[:500]}")
    return list(body["results"])
