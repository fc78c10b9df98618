"""Fixtures of the fault tests: a fresh system per test, workers in-process or as processes,
the history checker's observations, and the figures each test reports."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clickhouse import ClickHouse
from core.commands import IngestVersion
from core.errors import ArtifactlogError
from core.settings import Settings
from projections.analytics import AnalyticsProjection
from projections.leases import PartitionLeases
from projections.parking import ParkingLot
from projections.runner import ProjectionWorker
from projections.version_history import TABLES, VersionHistoryProjection
from tests.conftest import role_process
from tests.faults.checker import (
    History,
    Observed,
    pg_checksum,
    read_clickhouse_ids,
    read_log,
    read_versions,
    status_of_code,
)
from tests.integration.streams import System, open_system


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


def worker(system: System, projection: Any = None, **kwargs: Any) -> ProjectionWorker:
    """An in-process projection worker (version history unless ``projection`` is given)."""
    projection = projection or VersionHistoryProjection(system.pool)
    assert system.settings.database_url
    leases = PartitionLeases(system.settings.database_url, projection.name,
                             system.settings.partitions)
    return ProjectionWorker(projection, system.js, system.settings, leases,
                            ParkingLot(system.pool), rebalance_interval=0.2, **kwargs)




class Processes:
    """`artifactlog run ROLE` processes a test starts; every one is gone after the test."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, settings: Settings, *role: str) -> subprocess.Popen[bytes]:
        proc = role_process(settings, *role)
        self.started.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    @staticmethod
    def terminate(*procs: subprocess.Popen[bytes]) -> list[int]:
        """SIGTERM, and the exit codes (0: a clean stop)."""
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        for proc in started.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def observe(system: System, *, clickhouse: ClickHouse | None = None,
                  read_model: bool = True) -> Observed:
    return Observed(
        log=await read_log(system.pool), stream=await system.stream_messages(),
        versions=await read_versions(system.pool) if read_model else None,
        clickhouse_ids=await read_clickhouse_ids(clickhouse) if clickhouse else None)


def history_checksum(system: System) -> Any:
    return pg_checksum(system.pool, TABLES)


async def produce(system: System, history: History, count: int, *, artifacts: int = 20,
                  prefix: str = "p", pause: float = 0.0,
                  stop: asyncio.Event | None = None) -> None:
    """Up to ``count`` ingests (until ``stop`` is set) through the application service, each
    with an idempotency key, as clients would send them; every one is logged in ``history``."""
    for i in range(count):
        if stop is not None and stop.is_set():
            return
        op = history.start("ns", f"a{i % artifacts}", key=f"{prefix}-{i}")
        try:
            result = await system.service.ingest(IngestVersion(
                op.namespace, op.name, content={"i": i, "p": prefix}, idempotency_key=op.key))
        except ArtifactlogError as exc:
            op.finish(status_of_code(exc.code), error=exc.code)
        except Exception as exc:  # a dependency failing under the fault
            op.finish("unknown", error=repr(exc))
        else:
            op.finish("ok", number=result.version.number)
        if pause:
            await asyncio.sleep(pause)


@pytest.fixture
async def analytics(chdb_path: Path, system: System) -> AsyncIterator[AnalyticsProjection]:
    """The analytics projection, in-process, over a ClickHouse database of its own."""
    database = f"f_{uuid.uuid4().hex[:12]}"
    clickhouse = ClickHouse(f"chdb://{chdb_path}", database=database)
    projection = AnalyticsProjection(clickhouse, system.settings)
    await projection.setup()
    try:
        yield projection
    finally:
        await clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
        await clickhouse.close()
