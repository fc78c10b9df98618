"""Faults 4 and 5: `kill -9` of the relay process, and of each projection worker process
(version history, analytics), again and again while clients ingest. Nothing acknowledged is
lost, nothing is doubled, and each projection converges to a fresh rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from core.jetstream import JetStreamPublisher
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import (
    History,
    analyse,
    converge,
    tables_differing,
)
from tests.faults.conftest import Processes, history_checksum, observe, produce
from tests.faults.figures import scale
from tests.integration.streams import System, running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INGESTS = scale(5_000, 50_000)  # at most: the producer runs until the kills are done
KILLS = scale(4, 60)


async def test_relay_sigkilled_again_and_again_under_load(
    system: System, processes: Processes, figures: dict[str, Any],
) -> None:
    history, rng = History(), random.Random(4)
    settings = system.settings.with_overrides(relay_batch_size=20)
    projector = processes.start(settings, "projection", "--name", "version_history")
    stop = asyncio.Event()
    producer = asyncio.create_task(produce(system, history, INGESTS, pause=0.002, stop=stop))
    kills = between_publish_and_checkpoint = 0
    for _ in range(KILLS):
        published = len(await system.stream_messages())
        relay = processes.start(settings, "relay")
        await wait_until(partial(_grew, system, published), within=20, interval=0.005)
        await asyncio.sleep(rng.random() * 0.03)  # while it catches up on the backlog
        processes.kill(relay)
        kills += 1
        between_publish_and_checkpoint += await _stream_ahead_of_checkpoint(system)
        await asyncio.sleep(0.2 + rng.random() * 0.3)  # a backlog builds up meanwhile
    stop.set()
    await producer
    published_by_killed = len(await system.stream_messages())
    fault_ended = time.monotonic()
    relay = processes.start(settings, "relay")
    convergence = await converge(
        [(VersionHistoryProjection(system.pool), history_checksum(system))],
        system.pool, system.settings, fault_ended=fault_ended)
    report = analyse(history, await observe(system))
    figures.update(report.figures(), kills=kills,
                   killed_between_publish_and_checkpoint=between_publish_and_checkpoint,
                   published_by_killed_relays=published_by_killed,
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert report.acknowledged == report.log_events > 0
    assert published_by_killed > 0
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)
    assert Processes.terminate(relay, projector) == [0, 0]


async def _grew(system: System, published: int) -> bool:
    info = await system.js.stream_info(system.settings.stream_name)
    return bool(info.state.messages > published)


async def _stream_ahead_of_checkpoint(system: System) -> int:
    """1 if the killed relay had published past its checkpoint (died between the two)."""
    tail = await JetStreamPublisher(system.js, system.settings).tail()
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT coalesce(max(position), 0) FROM relay_checkpoints")
        row = await cur.fetchone()
    return int(tail is not None and row is not None and tail.position > row[0])


async def test_projection_worker_sigkilled_again_and_again_under_load(
    system: System, processes: Processes, figures: dict[str, Any],
) -> None:
    history, rng = History(), random.Random(5)
    settings = system.settings.with_overrides(projection_batch_size=20)
    projection = VersionHistoryProjection(system.pool)
    kills = mid_batch = 0
    async with running(system.relay(poll_interval=0.05).run):
        stop = asyncio.Event()
        producer = asyncio.create_task(produce(system, history, INGESTS, pause=0.002,
                                               stop=stop))
        for _ in range(KILLS):
            applied = await _applied(projection, system)
            proc = processes.start(settings, "projection", "--name", "version_history")
            await wait_until(partial(_moved, projection, system, applied), within=20,
                             interval=0.005)
            await asyncio.sleep(rng.random() * 0.03)  # while it works through the backlog
            mid_batch += await _unacked(system) > 0
            processes.kill(proc)
            kills += 1
            await asyncio.sleep(0.2 + rng.random() * 0.3)
        stop.set()
        await producer
        fault_ended = time.monotonic()
        proc = processes.start(settings, "projection", "--name", "version_history")
        convergence = await converge([(projection, history_checksum(system))],
                                     system.pool, system.settings, fault_ended=fault_ended)
    report = analyse(history, await observe(system))
    figures.update(report.figures(), kills=kills, killed_with_a_batch_unacked=mid_batch,
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert report.acknowledged == report.log_events > 0
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)
    assert Processes.terminate(proc) == [0]


async def _applied(projection: VersionHistoryProjection, system: System) -> int:
    return sum([await projection.checkpoint(p) for p in range(system.settings.partitions)])


async def _moved(projection: VersionHistoryProjection, system: System, applied: int) -> bool:
    return await _applied(projection, system) > applied


async def _unacked(system: System, projection: str = "version_history") -> int:
    """Messages delivered to the worker and not yet acknowledged, over all partitions."""
    return sum(info.num_ack_pending for info in await _consumer_infos(system, projection))


async def test_analytics_worker_sigkilled_again_and_again_under_load(
    system: System, processes: Processes, figures: dict[str, Any], tmp_path: Path,
) -> None:
    """Fault 5 for the analytics projection: its worker process owns a chDB directory of its
    own (chDB opens one per process), is SIGKILLed mid-batch again and again, and once the
    last worker has drained the stream and stopped, a probe process reads that directory."""
    history, rng = History(), random.Random(6)
    settings = system.settings.with_overrides(
        projection_batch_size=20, clickhouse_url=f"chdb://{tmp_path / 'worker-chdb'}")
    kills = mid_batch = 0
    async with running(system.relay(poll_interval=0.05).run):
        stop = asyncio.Event()
        producer = asyncio.create_task(produce(system, history, INGESTS, pause=0.002,
                                               stop=stop))
        for _ in range(KILLS):
            acked = await _acked(system, "analytics")
            proc = processes.start(settings, "projection", "--name", "analytics")
            await wait_until(partial(_acked_more, system, "analytics", acked), within=30,
                             interval=0.005)
            await asyncio.sleep(rng.random() * 0.03)  # while it works through the backlog
            mid_batch += await _unacked(system, "analytics") > 0
            processes.kill(proc)
            kills += 1
            await asyncio.sleep(0.2 + rng.random() * 0.3)
        stop.set()
        await producer
        fault_ended = time.monotonic()
        proc = processes.start(settings, "projection", "--name", "analytics")
        await wait_until(partial(_drained, system, "analytics"), within=60, interval=0.05)
        convergence_seconds = round(time.monotonic() - fault_ended, 3)
    assert Processes.terminate(proc) == [0]
    probed = await probe_chdb(settings)
    differing = tables_differing(probed["live"], probed["rebuilt"])
    observed = await observe(system, read_model=False)
    observed.clickhouse_ids = probed["clickhouse_ids"]
    report = analyse(history, observed)
    figures.update(report.figures(), kills=kills, killed_with_a_batch_unacked=mid_batch,
                   count_minus_uniq_exact=probed["count_minus_uniq"],
                   convergence_seconds=convergence_seconds,
                   equal_to_rebuild=probed["live"] == probed["rebuilt"],
                   tables_differing_from_rebuild=differing)
    assert report.problems() == {}
    assert report.acknowledged == report.log_events > 0
    assert probed["count_minus_uniq"] == 0
    assert probed["at_head"], "the consumers were drained but a checkpoint is behind the log"
    assert differing == [], (probed["live"], probed["rebuilt"])


async def probe_chdb(settings: Settings) -> dict[str, Any]:
    """What tests/faults/chdb_probe.py reads from the chDB directory of ``settings`` (its
    writer must have exited)."""
    env = {**os.environ, **settings.environment(), "ARTIFACTLOG_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults.chdb_probe", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    probed: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return probed


async def _consumer_infos(system: System, projection: str) -> list[Any]:
    infos = []
    for partition in range(system.settings.partitions):
        with contextlib.suppress(NotFoundError):
            infos.append(await system.js.consumer_info(system.settings.stream_name,
                                                       f"{projection}-p{partition}"))
    return infos


async def _acked(system: System, projection: str) -> int:
    return sum(info.ack_floor.stream_seq for info in await _consumer_infos(system, projection))


async def _acked_more(system: System, projection: str, acked: int) -> bool:
    return await _acked(system, projection) > acked


async def _drained(system: System, projection: str) -> bool:
    """The stream holds the whole log and every partition's consumer has delivered and got
    acks for all of it (a worker acks a batch only after its checkpoint is written)."""
    info = await system.js.stream_info(system.settings.stream_name)
    async with system.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM events")
        row = await cur.fetchone()
    if row is None or info.state.messages < row[0]:
        return False
    infos = await _consumer_infos(system, projection)
    return len(infos) == system.settings.partitions and all(
        i.num_pending == 0 and i.num_ack_pending == 0 for i in infos)
