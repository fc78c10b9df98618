"""Session fixtures: the real engines (embedded PostgreSQL and nats-server), started once.

Tests that need isolation from each other get fresh names (``names``) or, where they read the
whole log (relay tests), a fresh database and a fresh JetStream stream (``fresh_system``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.auth import TokenService
from core.commands import IngestVersion
from core.db import migrate, open_pool
from core.eventlog_pg import PostgresEventStore
from core.runtime import EmbeddedNats, EmbeddedPostgres, free_port
from core.services import ArtifactService
from core.settings import Settings
from core.snapshots_loader import SnapshotLoader
from core.snapshots_pg import PostgresSnapshots
from tests.faults import figures as figures_module


@dataclass
class Engines:
    home: Path
    postgres: EmbeddedPostgres
    nats: EmbeddedNats
    chdb_path: Path

    def settings(self, **overrides: object) -> Settings:
        base = Settings(home=self.home, database_url=self.postgres.url, nats_url=self.nats.url,
                        clickhouse_url=f"chdb://{self.chdb_path}")
        return base.with_overrides(**overrides)


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chDB directory of the test process (chDB opens one per process); tests keep
    apart by ClickHouse database."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Engines]:
    home = tmp_path_factory.mktemp("artifactlog-home")
    postgres = EmbeddedPostgres(home / "postgres" / "data", free_port())
    nats = EmbeddedNats(home / "nats", free_port())
    postgres.start()
    try:
        nats.start()
        migrate(postgres.url)
        yield Engines(home, postgres, nats, chdb_path)
    finally:
        nats.stop()
        postgres.stop()


def role_process(settings: Settings, *role: str) -> subprocess.Popen[bytes]:
    """An `artifactlog run ROLE` process against ``settings`` (its output goes to a log)."""
    env = {**os.environ, **settings.environment(), "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
    log = (settings.home / f"{'-'.join(role)}.log").open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "api.cli", "run", *role], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


@pytest.fixture(scope="session")
def workers(engines: Engines) -> Iterator[None]:
    """The relay and the projection workers for the shared database, as real processes."""
    settings = engines.settings()
    processes = [role_process(settings, "relay"),
                 role_process(settings, "projection", "--name", "version_history")]
    asyncio.run(wait_for_pipeline(settings))
    yield
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.wait(20)


PIPELINE_START_SECONDS = 120.0


async def wait_for_pipeline(settings: Settings) -> None:
    """Ingest one probe version and wait until the read model shows it: the relay and the
    projection worker are then up and consuming. Starting two Python processes takes seconds
    on a loaded machine, longer than a read's own wait (read_wait_seconds)."""
    assert settings.database_url
    pool = await open_pool(settings.database_url)
    try:
        service = ArtifactService(PostgresEventStore(pool),
                                  max_content_bytes=settings.max_content_bytes)
        probe = await service.ingest(IngestVersion(
            namespace="pipeline-probe", name=uuid.uuid4().hex, content={"probe": True}))
        deadline = time.monotonic() + PIPELINE_START_SECONDS
        async with pool.connection() as conn:
            while True:
                row = await (await conn.execute(
                    "SELECT 1 FROM vh_versions WHERE namespace = %s AND name = %s",
                    (probe.version.namespace, probe.version.name))).fetchone()
                if row:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the relay and projection worker did not carry an event to the read"
                        f" model within {PIPELINE_START_SECONDS:.0f}s; see the role logs in"
                        f" {settings.home}")
                await asyncio.sleep(0.1)
    finally:
        await pool.close()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """An ARTIFACTLOG_HOME for an `artifactlog up` the test starts (tests/e2e/test_up.py Up)."""
    from tests.e2e.test_up import pids_using

    home = tmp_path / "home"
    yield home
    for pid in pids_using(home):  # never leave servers behind, even when a test fails
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def names() -> str:
    """A namespace no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(engines: Engines) -> Settings:
    return engines.settings()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[PostgresEventStore]:
    assert settings.database_url
    pool = await open_pool(settings.database_url)
    try:
        yield PostgresEventStore(pool)
    finally:
        await pool.close()


async def new_token(store: PostgresEventStore, *scopes: str,
                    namespaces: list[str] | None = None) -> str:
    """A fresh API token (its name is unique, as token names must be)."""
    token, _ = await TokenService(store.pool).create(f"t-{uuid.uuid4().hex[:12]}",
                                                     list(scopes), namespaces)
    return token


@pytest.fixture
def service(store: PostgresEventStore, settings: Settings) -> ArtifactService:
    return ArtifactService(store, max_content_bytes=settings.max_content_bytes,
                           snapshots=SnapshotLoader(store, PostgresSnapshots(store.pool)))


@pytest.fixture
def fresh_settings(engines: Engines) -> Settings:
    """A database of its own (migrated) and a JetStream stream of its own."""
    suffix = uuid.uuid4().hex[:10]
    database = f"t_{suffix}"
    admin = engines.postgres.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    url = engines.postgres.url.rsplit("/", 1)[0] + f"/{database}"
    migrate(url)
    return engines.settings(database_url=url, stream_name=f"T_{suffix}",
                            subject_prefix=f"t{suffix}.events")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What the test measured; saved (and printed at the end) even when the test fails."""
    found: dict[str, Any] = {}
    yield found
    figures_module.save(request.node.nodeid, found)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = figures_module.summary_lines()
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
