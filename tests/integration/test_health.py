"""/healthz and /readyz against the real engines: ready when every dependency answers, 503
naming the one that does not (NATS stopped, Postgres on a closed port, migrations behind)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from core.analytics_sql import ReadOnlySql
from core.clickhouse import ClickHouse
from core.db import migrate
from core.runtime import EmbeddedNats, free_port
from core.settings import Settings
from tests.conftest import Engines
from tests.integration.observed import observed_app
from tests.integration.streams import System, open_system

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings.with_overrides(probe_timeout_seconds=1.0)) as system:
        yield system


async def test_ready_when_postgres_nats_clickhouse_and_migrations_are(
        system: System, chdb_path: Path) -> None:
    analytics = ReadOnlySql(ClickHouse(f"chdb://{chdb_path}"))
    # Opening the chDB engine takes longer than a probe may: a process that serves
    # analytics has opened it before it serves (the projection's setup).
    await analytics.clickhouse.query("SELECT 1")
    try:
        async with observed_app(system, analytics=analytics) as app:
            app.http.headers.pop("Authorization")  # probes carry no credentials
            assert (await app.http.get("/healthz")).json() == {"status": "ok"}
            ready = await app.http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready", "checks": {
                "postgres": "ok", "migrations": "ok", "nats": "ok", "clickhouse": "ok"}}
    finally:
        await analytics.clickhouse.close()


async def test_nats_down_is_named(system: System,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    nats = EmbeddedNats(tmp_path_factory.mktemp("nats-down"), free_port())
    nats.start()
    try:
        async with observed_app(system, nats_url=nats.url) as app:
            assert (await app.http.get("/readyz")).status_code == 200
            nats.stop()
            started = time.monotonic()
            ready = await app.http.get("/readyz")
            assert time.monotonic() - started < 3  # bounded by probe_timeout_seconds
            assert ready.status_code == 503
            body = ready.json()
            assert body["status"] == "unavailable"
            assert body["failed"] == ["nats"]
            assert body["checks"]["postgres"] == "ok"
            assert (await app.http.get("/healthz")).status_code == 200  # still alive
    finally:
        with contextlib.suppress(Exception):
            nats.stop()


async def test_postgres_down_is_named_without_its_password(system: System) -> None:
    closed = free_port()
    url = f"postgresql://postgres:hunter2secret@127.0.0.1:{closed}/nothing?connect_timeout=1"
    pool = AsyncConnectionPool(url, min_size=1, open=False)
    await pool.open(wait=False)
    try:
        down = System(system.settings, pool, system.store, system.service, system.nats,
                      system.js)
        async with observed_app(down, token_pool=system.pool) as app:
            ready = await app.http.get("/readyz")
    finally:
        await pool.close(timeout=1)
    assert ready.status_code == 503
    assert set(ready.json()["failed"]) == {"postgres", "migrations"}
    assert ready.json()["checks"]["nats"] == "ok"
    assert "hunter2secret" not in ready.text


async def test_migrations_behind_the_code_are_named(engines: Engines, system: System) -> None:
    database = f"t_{uuid.uuid4().hex[:10]}"
    admin = engines.postgres.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    url = engines.postgres.url.rsplit("/", 1)[0] + f"/{database}"
    migrate(url, "0004")
    async with open_system(system.settings.with_overrides(database_url=url)) as behind, \
            observed_app(behind) as app:
        ready = await app.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["migrations"]
    assert "0004" in ready.json()["checks"]["migrations"]
