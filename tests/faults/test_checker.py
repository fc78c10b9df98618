"""Negative controls: the history checker must see loss and duplication when they happen.

1. Real loss: PostgreSQL with asynchronous commit (``synchronous_commit = off`` for the
   database, the WAL writer waking every 10 s) SIGKILLed right after a burst of acknowledged
   ingests. The commits were acknowledged before their WAL reached the disk, so some vanish,
   and the checker must name them. (The real configuration is ``synchronous_commit=on`` and
   ``fsync=on``, core/runtime.py: the fault tests above run with those.)
2. A scratch stream missing one message: the checker reports it lost from the stream.
3. Copies of real observations with one event dropped, and one row doubled, from each source.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.commands import IngestVersion
from core.db import migrate, open_pool
from core.eventlog_pg import PostgresEventStore
from core.runtime import EmbeddedPostgres, free_port
from core.services import ArtifactService
from projections.rebuild import rebuild
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import History, Observed, analyse, read_log
from tests.faults.conftest import observe, produce
from tests.integration.streams import System

pytestmark = pytest.mark.anyio


@pytest.mark.slow
async def test_checker_reports_acknowledged_commits_lost_by_async_commit(
    tmp_path: Path, figures: dict[str, Any],
) -> None:
    server = EmbeddedPostgres(tmp_path / "data", free_port())
    server.start()
    try:
        migrate(server.url)
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("ALTER DATABASE artifactlog SET synchronous_commit = off")
            conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            conn.execute("SELECT pg_reload_conf()")
        history, attempts, report = History(), 0, None
        while attempts < 3:  # WAL that happens to fill a page is written at once: retry
            attempts += 1
            pool = await open_pool(server.url, max_size=4)
            service = ArtifactService(PostgresEventStore(pool), max_content_bytes=1 << 20)
            for i in range(100):
                op = history.start("ns", f"a{i % 5}", key=f"async-{attempts}-{i}")
                result = await service.ingest(IngestVersion(
                    "ns", op.name, content={"i": i, "pad": "x" * 200}, idempotency_key=op.key))
                op.finish("ok", number=result.version.number)
            assert server.proc is not None
            os.killpg(server.proc.pid, signal.SIGKILL)  # acknowledged, not yet on disk
            server.proc.wait()
            await pool.close()
            server.start()
            pool = await open_pool(server.url)
            try:
                report = analyse(history, Observed(log=await read_log(pool)))
            finally:
                await pool.close()
            if report.lost_acknowledged:
                break
    finally:
        server.stop()
    assert report is not None
    figures.update(acknowledged=report.acknowledged, lost=report.lost_acknowledged,
                   lost_keys=report.lost_details[:5], attempts=attempts)
    assert report.lost_acknowledged > 0, "asynchronous commit lost nothing: the control is void"
    assert report.problems().keys() == {"lost_acknowledged"}


async def test_checker_reports_a_message_missing_from_a_scratch_stream(
    system: System, figures: dict[str, Any],
) -> None:
    history = History()
    await produce(system, history, 20)
    events = await system.store.read_after(0, 100)
    relay = system.relay()
    await relay.resume()
    await relay.publisher.publish(events[:7] + events[8:])  # message 8 never published
    report = analyse(history, await observe(system, read_model=False))
    figures.update(stream_lost=report.stream_lost)
    assert report.problems() == {"stream_lost": 1}


async def test_checker_reports_what_was_dropped_from_or_doubled_in_a_copy(
    system: System, figures: dict[str, Any],
) -> None:
    history = History()
    await produce(system, history, 30, artifacts=3)
    history.start("ns", "a0", key="p-3")  # unknown: sent again, the answer never came
    history.start("ns", "a0", key="never-written")  # unknown: timed out before the append
    failed = history.start("ns", "a1", key="p-4")  # claimed refused, yet it was written
    failed.finish("failed", error="CONFLICT")
    await system.relay().publish_pending()
    await rebuild(VersionHistoryProjection(system.pool), system.store, system.settings)
    real = await observe(system)
    assert real.stream is not None
    assert real.versions is not None
    clean = analyse(history, real)
    copies = {
        "log_event_dropped": dataclasses.replace(real, log=real.log[:10] + real.log[11:]),
        "stream_message_dropped": dataclasses.replace(real, stream=real.stream[1:]),
        "stream_message_doubled": dataclasses.replace(real, stream=real.stream + real.stream[:1]),
        "stream_reordered": dataclasses.replace(real, stream=real.stream[::-1]),
        "version_row_dropped": dataclasses.replace(real, versions=real.versions[1:]),
        "version_row_doubled": dataclasses.replace(real,
                                                   versions=real.versions + real.versions[:1]),
        "clickhouse_row_doubled": dataclasses.replace(
            real, clickhouse_ids=[str(e.event_id) for e in real.log] + [str(real.log[0].event_id)]),
    }
    found = {name: analyse(history, copy).problems() for name, copy in copies.items()}
    figures.update(clean=clean.problems(), unknown_resolved=clean.unknown_resolved,
                   **{name: sorted(problems) for name, problems in found.items()})
    assert clean.problems() == {"failed_but_written": 1}
    assert clean.unknown_resolved == {"0": 1, "1": 1, "2+": 0}
    dropped = found["log_event_dropped"]
    assert dropped["lost_acknowledged"] == 1
    assert dropped["gaps"] >= 1
    assert dropped["read_model_duplicates"] == 1  # a version the (copied) log does not have
    assert found["stream_message_dropped"]["stream_lost"] == 1
    assert found["stream_message_doubled"]["stream_duplicates"] == 1
    assert found["stream_reordered"]["stream_out_of_order"] == len(real.stream) - 1
    assert found["version_row_dropped"]["read_model_lost"] == 1
    assert found["version_row_doubled"]["read_model_duplicates"] == 1
    assert found["clickhouse_row_doubled"]["clickhouse_duplicates"] == 1
