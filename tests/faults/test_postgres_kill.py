"""Fault 7: PostgreSQL killed under load (SIGKILL of every server process at once, and an
immediate shutdown: SIGQUIT to the postmaster), with clients writing through the in-process
API (GraphQL ingest and /ingest/bulk). Every acknowledged ingest survives; while the database
is down clients get 503 or GraphQL UNAVAILABLE, never a 500 or an INTERNAL error; after the
restart their retries with the same idempotency keys create no duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from api.server import build_services
from core.auth import TokenService
from core.commands import IngestVersion
from core.db import migrate, open_pool
from core.jetstream import connect
from core.runtime import EmbeddedPostgres, free_port
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import (
    History,
    Op,
    Report,
    analyse,
    at_head,
    read_log,
    status_of_code,
)
from tests.faults.checker import Observed as Seen
from tests.faults.conftest import observe, produce, worker
from tests.faults.figures import scale
from tests.integration.streams import open_system, running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INGEST = """mutation($input: IngestInput!) { ingest(input: $input) { version { number } } }"""
RETRYABLE = {"UNAVAILABLE", "TIMEOUT"}


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of its own, to kill."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg-fault") / "data", free_port())
    server.start()
    migrate(server.url)
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.database_url
    assert settings.nats_url
    pool = await open_pool(settings.database_url, max_size=10)
    pool.timeout = 5.0  # how long a request waits for a connection while the server is down
    nc = await connect(settings.nats_url, name="pg-fault")
    try:
        tokens = TokenService(pool)
        token, _ = await tokens.create(f"t{time.monotonic_ns()}", ["admin"])
        services = build_services(pool, nc.jetstream(), settings,
                                  {"version_history": VersionHistoryProjection(pool)})
        transport = httpx.ASGITransport(app=create_app(services, settings, tokens),
                                        raise_app_exceptions=False)  # as a server: a 500
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            yield client
    finally:
        await nc.close()
        await pool.close()


class Clients:
    """Writers through GraphQL and /ingest/bulk; every answer that is not success, a
    definite refusal or a retryable 503/UNAVAILABLE is kept as a bad answer."""

    def __init__(self, client: httpx.AsyncClient, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.history = History()
        self.bad: list[str] = []
        self.answers: dict[str, int] = {}

    async def graphql(self, op: Op) -> None:
        variables = {"input": {"namespace": op.namespace, "name": op.name,
                               "content": {"key": op.key}, "idempotencyKey": op.key}}
        response = await self.client.post("/graphql", json={"query": INGEST,
                                                            "variables": variables})
        body = _json(response)
        if response.status_code == 200 and body.get("data") and not body.get("errors"):
            op.finish("ok", number=body["data"]["ingest"]["version"]["number"])
            self._count("ok")
            return
        code = (body.get("errors") or [{}])[0].get("extensions", {}).get("code") or (
            body.get("error") or {}).get("code")
        self._settle(op, response.status_code, code, f"graphql {response.status_code} {code}")

    async def bulk(self, ops: list[Op]) -> None:
        lines = [json.dumps({"namespace": op.namespace, "name": op.name, "content": {
            "key": op.key}, "idempotencyKey": op.key}) for op in ops]
        response = await self.client.post("/ingest/bulk", content="\n".join(lines),
                                          headers={"content-type": "application/x-ndjson"})
        body = _json(response)
        if response.status_code != 200:
            code = (body.get("error") or {}).get("code")
            for op in ops:
                self._settle(op, response.status_code, code, f"bulk {response.status_code} {code}")
            return
        for op, result in zip(ops, body["results"], strict=True):
            if "error" in result:
                code = result["error"]["code"]
                self._settle(op, 200, code, f"bulk line {code}")
            else:
                op.finish("ok", number=result["number"])
                self._count("ok")

    def _settle(self, op: Op, status: int, code: str | None, what: str) -> None:
        self._count(what)
        ok_refusal = code in RETRYABLE and status in (200, 503, 504)
        if not ok_refusal and status_of_code(code) != "failed":
            self.bad.append(what)
        op.finish("unknown" if code in RETRYABLE or code is None else status_of_code(code),
                  error=what)

    def _count(self, what: str) -> None:
        self.answers[what] = self.answers.get(what, 0) + 1

    async def write(self, stop: asyncio.Event, w: int) -> None:
        i = 0
        while not stop.is_set():
            ops = [self.history.start(self.namespace, f"w{w}", key=f"{self.namespace}-{w}-{i + j}")
                   for j in range(1 if w % 2 else 3)]
            await (self.graphql(ops[0]) if w % 2 else self.bulk(ops))
            i += len(ops)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def until(condition: Callable[[], bool], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the clients made no progress"
        await asyncio.sleep(0.01)


def restart(server: EmbeddedPostgres) -> None:
    try:
        server.start()
    except Exception as exc:
        log = server.log_file.read_text(errors="replace").splitlines()[-15:]
        raise AssertionError("postgres did not come back:\n" + "\n".join(log)) from exc


def crash(server: EmbeddedPostgres, how: str) -> None:
    assert server.proc is not None
    if how == "sigkill":  # every server process at once, as a machine crash would
        os.killpg(server.proc.pid, signal.SIGKILL)
    else:  # immediate shutdown: no checkpoint, WAL replay on the next start
        server.proc.send_signal(signal.SIGQUIT)
    server.proc.wait()


@dataclass
class Outcome:
    clients: Clients
    acked_at_crash: int
    recovered_seconds: float
    before: Report
    after: Report


OUTCOMES: dict[str, Outcome] = {}  # each crash is run once, checked by both tests below


async def crashed(how: str, postgres: EmbeddedPostgres, settings: Settings) -> Outcome:
    if how in OUTCOMES:
        return OUTCOMES[how]
    settings = settings.with_overrides(database_url=postgres.url)
    namespace = f"{how}{time.monotonic_ns() % 10**8}"
    async with api(settings) as client:
        clients = Clients(client, namespace)
        stop = asyncio.Event()
        writers = [asyncio.create_task(clients.write(stop, w)) for w in range(6)]
        await until(lambda: clients.history.count("ok") >= 60)
        crash(postgres, how)
        acked_at_crash = clients.history.count("ok")
        await asyncio.sleep(scale(1, 10))  # down, while the clients go on
        restarted = time.monotonic()
        restart(postgres)
        await until(lambda: clients.history.count("ok") >= acked_at_crash + 30)
        recovered_seconds = time.monotonic() - restarted
        stop.set()
        await asyncio.gather(*writers)
        pool = await open_pool(postgres.url)
        try:
            before = analyse(clients.history, Seen(log=await read_log(pool, [namespace])))
            for op in [op for op in clients.history.ops if op.status != "ok"]:
                await clients.graphql(op)  # the retry, with the same key
            after = analyse(clients.history, Seen(log=await read_log(pool, [namespace])))
        finally:
            await pool.close()
    OUTCOMES[how] = Outcome(clients, acked_at_crash, recovered_seconds, before, after)
    return OUTCOMES[how]


@pytest.mark.parametrize("how", ["sigkill", "immediate"])
async def test_postgres_crash_loses_and_doubles_nothing(
    postgres: EmbeddedPostgres, fresh_settings: Settings, how: str, figures: dict[str, Any],
) -> None:
    outcome = await crashed(how, postgres, fresh_settings)
    before, after, clients = outcome.before, outcome.after, outcome.clients
    figures.update(crash=how, requests=len(clients.history.ops),
                   acked_at_crash=outcome.acked_at_crash, unknown=before.unknown,
                   unknown_resolved=before.unknown_resolved, lost=after.lost_acknowledged,
                   duplicates=after.duplicate_events,
                   recovered_seconds=round(outcome.recovered_seconds, 2),
                   answers=clients.answers, bad_answers=len(clients.bad))
    assert before.lost_acknowledged == 0
    assert before.unknown_resolved["2+"] == 0
    assert after.problems() == {}
    assert all(op.status == "ok" for op in clients.history.ops)


@pytest.mark.parametrize("how", ["sigkill", "immediate"])
async def test_postgres_crash_answers_only_retryable_errors(
    postgres: EmbeddedPostgres, fresh_settings: Settings, how: str,
) -> None:
    outcome = await crashed(how, postgres, fresh_settings)
    assert outcome.clients.bad == [], sorted(set(outcome.clients.bad))


async def test_projection_worker_recovers_after_a_postgres_restart(
    postgres: EmbeddedPostgres, fresh_settings: Settings, figures: dict[str, Any],
) -> None:
    """The worker's partition leases live in one Postgres session; a crash ends it (and its
    locks). The worker must notice, give its partitions up and take them again on a new
    session, not retry on the dead one forever (found by the soak, tests/faults/test_soak.py)."""
    database = f"w{time.monotonic_ns() % 10**10}"
    admin = postgres.url.rsplit("/", 1)[0] + "/postgres"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {database}")
    url = postgres.url.rsplit("/", 1)[0] + f"/{database}"
    migrate(url)
    settings = fresh_settings.with_overrides(database_url=url)
    history = History()
    async with open_system(settings) as system:
        system.pool.timeout = 2.0
        async with running(system.relay(poll_interval=0.05).run, worker(system).run):
            await produce(system, history, 20, prefix="before")
            projection = VersionHistoryProjection(system.pool)
            await wait_until(partial(at_head, projection, system.pool, settings), within=30)
            crash(postgres, "sigkill")
            await asyncio.sleep(0.5)
            restart(postgres)
            restarted = time.monotonic()
            await produce(system, history, 20, prefix="after")
            retried = history.count("unknown")
            for op in [op for op in history.ops if op.status == "unknown"]:
                # the pool's connections from before the crash fail first: resend, same key
                result = await system.service.ingest(IngestVersion(
                    op.namespace, op.name, content={"i": op.key, "p": "retry"},
                    idempotency_key=op.key))
                op.finish("ok", number=result.version.number)
            await wait_until(partial(at_head, projection, system.pool, settings), within=30)
            recovered = time.monotonic() - restarted
        report = analyse(history, await observe(system))
    figures.update(report.figures(), retried=retried,
                   caught_up_after_restart_seconds=round(recovered, 2))
    assert report.problems() == {}
    assert report.acknowledged == report.log_events == 40
