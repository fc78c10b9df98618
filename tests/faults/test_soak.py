"""Fault 10, the soak: faults on a random schedule at a steady ingest rate.

A PostgreSQL and a nats-server of its own (so they can be killed), the relay and both
projection workers as `artifactlog run` processes (the analytics worker on a chDB directory of
its own), kept alive by a supervisor loop as systemd would. Clients ingest at a steady rate
with idempotency keys and retry what ended unknown. One fault at a time, chosen at random:
SIGKILL of the relay, of either worker, of nats-server (down 1 s) or of every PostgreSQL
process (down 1 s); after each, the time until both projections have caught up with the log
head as it was when the fault ended; then a random pause. At the end: lost, duplicates, gaps
(history checker over the log, the stream, the read model and ClickHouse), both projections
equal to a fresh rebuild, the worst convergence time and each process's peak memory.

The CI form runs 15 s of faults (under a minute in all) without the broker kill (see FAULTS).
The 10-minute form, with it:

    ARTIFACTLOG_SOAK_SECONDS=600 pytest -q tests/faults/test_soak.py -p no:cacheprovider

(``ARTIFACTLOG_LONG=1`` selects it too; ``ARTIFACTLOG_SOAK_SEED`` replays a schedule.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from nats.js.errors import NotFoundError

from core.commands import IngestVersion
from core.db import migrate
from core.errors import ArtifactlogError
from core.jetstream import JetStreamPublisher, partition_of, partition_subject
from core.runtime import EmbeddedNats, EmbeddedPostgres, free_port
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.conftest import role_process
from tests.faults.checker import (
    History,
    Op,
    analyse,
    converge,
    status_of_code,
    tables_differing,
)
from tests.faults.conftest import history_checksum, observe
from tests.faults.figures import scale
from tests.faults.test_process_kills import _drained, probe_chdb
from tests.integration.streams import System, open_system, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SECONDS = float(os.environ.get("ARTIFACTLOG_SOAK_SECONDS") or scale(15, 600))
RATE = 25.0  # ingests per second, steady
# After a broker crash the analytics signal (its consumers' ack floors) can lag by the
# consumers' AckWait (60 s: the restarted broker may have lost acks it had received), which
# alone would exceed the CI form's minute; fault 6 kills the broker in CI instead.
FAULTS = ("relay", "version_history", "analytics", "postgres") + (
    ("nats",) if SECONDS >= 120 else ())
ROLES = {"relay": ("relay",), "version_history": ("projection", "--name", "version_history"),
         "analytics": ("projection", "--name", "analytics")}
PROJECTIONS = ("version_history", "analytics")


class Supervisor:
    """The role processes, restarted whenever one exits (a crash, or a dependency down at its
    start), as a service manager would; the soak's own kills restart at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.unplanned_exits: Counter[str] = Counter()

    def start(self, role: str) -> None:
        self.procs[role] = role_process(self.settings, *ROLES[role])

    def kill_and_restart(self, role: str) -> None:
        proc = self.procs[role]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.start(role)

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for role, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    self.unplanned_exits[role] += 1
                    self.start(role)
            await asyncio.sleep(0.2)

    def terminate(self) -> dict[str, int]:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {}
        for role, proc in self.procs.items():
            try:
                codes[role] = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[role] = proc.wait()
        return codes


@dataclass
class Memory:
    """Peak resident memory of each process (sampled every 0.5 s; PostgreSQL's backends
    are summed, so PostgreSQL's shared buffers count once per process that touched them)."""

    peak_mb: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    async def sample(self, pids: Callable[[], dict[str, int | None]],
                     stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, pid in pids().items():
                if pid is None:  # a server between its kill and its restart
                    continue
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    rss = process.memory_info().rss
                    if name == "postgres":  # the postmaster and its backends
                        rss += sum(child.memory_info().rss for child in process.children())
                    self.peak_mb[name] = max(self.peak_mb[name], round(rss / 2**20, 1))
            await asyncio.sleep(0.5)


class Clients:
    """Ingests at a steady rate, each with an idempotency key; what ends unknown (the store
    or the broker down) is retried with its key until it is acknowledged."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.history = History()
        self.retry: list[Op] = []
        self.in_flight: set[asyncio.Task[None]] = set()
        # Requests in progress at once, as a client's connection pool would allow: unbounded,
        # a backlog after an outage would wait out pool timeouts and never drain.
        self.connections = asyncio.Semaphore(8)
        self.seconds = 0.0  # how long the clients sent at the steady rate
        self.retried = 0  # answers that left an operation unknown, each resent with its key

    async def ingest(self, op: Op) -> None:
        try:
            async with self.connections:
                result = await self.system.service.ingest(IngestVersion(
                    op.namespace, op.name, content={"key": op.key}, idempotency_key=op.key))
        except ArtifactlogError as exc:
            op.finish(status_of_code(exc.code), error=exc.code)
        except Exception as exc:  # a dependency failing under the fault
            op.finish("unknown", error=type(exc).__name__)
        else:
            op.finish("ok", number=result.version.number)
        if op.status == "unknown":
            self.retry.append(op)
            self.retried += 1

    async def run(self, stop: asyncio.Event) -> None:
        started, sent = time.monotonic(), 0
        while not stop.is_set():
            if self.retry and sent % 10 == 0:
                self._send(self.retry.pop(0))
            op = self.history.start("soak", f"a{sent % 40}", key=f"soak-{sent}")
            self._send(op)
            sent += 1
            await asyncio.sleep(max(0.0, started + sent / RATE - time.monotonic()))
        self.seconds = time.monotonic() - started
        await self.settle()

    async def settle(self, within: float = 120.0) -> None:
        """Retry every unknown operation until each is acknowledged."""
        deadline = time.monotonic() + within
        while self.in_flight or self.retry:
            assert time.monotonic() < deadline, (
                f"{len(self.retry)} operations stay unknown",
                Counter(op.error for op in self.retry).most_common(3))
            while self.retry:
                self._send(self.retry.pop())
            await asyncio.gather(*self.in_flight)
            await asyncio.sleep(0.2 if self.retry else 0)

    def _send(self, op: Op) -> None:
        task = asyncio.create_task(self.ingest(op))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)


async def log_head(system: System) -> int:
    while True:
        with contextlib.suppress(Exception):
            async with system.pool.connection() as conn:
                cur = await conn.execute("SELECT coalesce(max(position), 0) FROM events")
                row = await cur.fetchone()
                return int(row[0]) if row else 0
        await asyncio.sleep(0.1)


async def caught_up(system: System, head: int, since: float, within: float = 120.0
                    ) -> dict[str, float]:
    """Seconds from ``since`` until each projection had applied every event up to ``head``.

    version_history: its checkpoints in Postgres reach each partition's last event up to
    ``head`` (exact). ``... acks``: the relay has published ``head`` (the stream's tail
    position), then each partition's consumer has acknowledged the partition's last message
    at that moment (a worker acks only after its write): an upper bound, and the only view of
    the analytics worker, whose chDB directory no other process may open while it runs.
    """
    deadline = time.monotonic() + within
    publisher, last_seq, reached = JetStreamPublisher(system.js, system.settings), None, {}
    heads = await _partition_heads(system, head)
    while len(reached) < 3:
        assert time.monotonic() < deadline, f"no convergence to {head} in {within}s: {reached}"
        with contextlib.suppress(Exception):
            if "version_history" not in reached and await _checkpoints_reach(system, heads):
                reached["version_history"] = time.monotonic() - since
            if last_seq is None:
                tail = await publisher.tail()
                if tail is not None and tail.position >= head:
                    last_seq = await _last_seq_per_partition(system)
            for projection in PROJECTIONS:
                name = f"{projection} (acks)"
                if (name not in reached and last_seq is not None
                        and await _acked_up_to(system, projection, last_seq)):
                    reached[name] = time.monotonic() - since
        await asyncio.sleep(0.05)
    return reached


async def _partition_heads(system: System, head: int) -> dict[int, int]:
    while True:
        with contextlib.suppress(Exception):
            async with system.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT namespace, name, max(position) FROM events WHERE position <= %s"
                    " GROUP BY namespace, name", (head,))
                heads: dict[int, int] = defaultdict(int)
                for namespace, name, position in await cur.fetchall():
                    partition = partition_of(namespace, name, system.settings.partitions)
                    heads[partition] = max(heads[partition], int(position))
                return heads
        await asyncio.sleep(0.1)


async def _checkpoints_reach(system: System, heads: dict[int, int]) -> bool:
    projection = VersionHistoryProjection(system.pool)
    return all([await projection.checkpoint(p) >= position for p, position in heads.items()])


async def _last_seq_per_partition(system: System) -> dict[int, int]:
    found = {}
    for partition in range(system.settings.partitions):
        with contextlib.suppress(NotFoundError):
            msg = await system.js.get_last_msg(system.settings.stream_name,
                                               partition_subject(system.settings, partition))
            found[partition] = msg.seq or 0
    return found


async def _acked_up_to(system: System, projection: str, last_seq: dict[int, int]) -> bool:
    for partition, seq in last_seq.items():
        try:
            info = await system.js.consumer_info(system.settings.stream_name,
                                                 f"{projection}-p{partition}")
        except NotFoundError:  # a restarted worker is recreating it
            return False
        if info.ack_floor.stream_seq < seq:
            return False
    return True


async def test_soak_faults_on_a_random_schedule_at_a_steady_rate(
    settings: Settings, tmp_path: Path, figures: dict[str, Any],
) -> None:
    seed = int(os.environ.get("ARTIFACTLOG_SOAK_SEED") or time.time())
    rng = random.Random(seed)
    postgres = EmbeddedPostgres(tmp_path / "pg" / "data", free_port())
    nats = EmbeddedNats(tmp_path / "nats", free_port())
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(nats.start)
    migrate(postgres.url)
    settings = settings.with_overrides(
        home=tmp_path, database_url=postgres.url, nats_url=nats.url,
        clickhouse_url=f"chdb://{tmp_path / 'worker-chdb'}", stream_name="SOAK",
        subject_prefix="soak.events")
    supervisor, memory = Supervisor(settings), Memory()
    faults: Counter[str] = Counter()
    convergence: dict[str, dict[str, float]] = defaultdict(dict)
    try:
        async with open_system(settings) as system:
            system.pool.timeout = 2.0  # a request waits this long for a connection when down
            for role in ROLES:
                supervisor.start(role)
            clients, stop_clients, stop_watch = Clients(system), asyncio.Event(), asyncio.Event()
            background = [
                asyncio.create_task(clients.run(stop_clients)),
                asyncio.create_task(supervisor.watch(stop_watch)),
                asyncio.create_task(memory.sample(lambda: {
                    **{role: proc.pid for role, proc in supervisor.procs.items()},
                    "postgres": postgres.pid, "nats-server": nats.pid,
                    "test (clients, checker)": os.getpid()}, stop_watch))]
            await caught_up(system, await log_head(system) + 1, time.monotonic())  # all up
            ends = time.monotonic() + SECONDS
            while time.monotonic() < ends:
                fault = rng.choice(FAULTS)
                await inject(fault, supervisor, postgres, nats)
                fault_ended = time.monotonic()
                faults[fault] += 1
                reached = await caught_up(system, await log_head(system), fault_ended)
                for projection, seconds in reached.items():
                    convergence[fault][projection] = max(
                        convergence[fault].get(projection, 0.0), round(seconds, 2))
                await asyncio.sleep(rng.uniform(0.5, 3.0))
            stop_clients.set()
            await background[0]
            fault_ended = time.monotonic()
            await wait_until(lambda: _drained_both(system), within=120, interval=0.1)
            final_convergence = time.monotonic() - fault_ended
            stop_watch.set()
            await asyncio.gather(*background[1:])
            exit_codes = supervisor.terminate()
            history_rebuild = await converge(
                [(VersionHistoryProjection(system.pool), history_checksum(system))],
                system.pool, settings, fault_ended=fault_ended)
            probed = await probe_chdb(settings)
            observed = await observe(system)
            observed.clickhouse_ids = probed["clickhouse_ids"]
            report = analyse(clients.history, observed)
    finally:
        with contextlib.suppress(Exception):
            supervisor.terminate()
        nats.stop()
        postgres.stop()
    differing = tables_differing(probed["live"], probed["rebuilt"])
    figures.update(
        seed=seed, fault_seconds=SECONDS, ingest_seconds=round(clients.seconds, 1),
        target_rate=RATE, achieved_rate=round(report.log_events / clients.seconds, 1),
        faults=dict(faults), unknown_answers_retried=clients.retried,
        **report.figures(), count_minus_uniq_exact=probed["count_minus_uniq"],
        worst_convergence_seconds=max(
            (s for by in convergence.values() for s in by.values()), default=0.0),
        worst_convergence_by_fault=dict(convergence),
        final_convergence_seconds=round(final_convergence, 2),
        version_history_equal_to_rebuild=history_rebuild.equal_to_rebuild,
        analytics_equal_to_rebuild=probed["live"] == probed["rebuilt"],
        analytics_tables_differing_from_rebuild=differing,
        unplanned_exits=dict(supervisor.unplanned_exits), exit_codes=exit_codes,
        peak_memory_mb=dict(memory.peak_mb))
    assert report.problems() == {}, f"seed {seed}"
    assert report.acknowledged == report.log_events == len(clients.history.ops)
    assert probed["count_minus_uniq"] == 0
    assert probed["at_head"]
    assert history_rebuild.equal_to_rebuild, (history_rebuild.live, history_rebuild.rebuilt)
    assert differing == [], (probed["live"], probed["rebuilt"])
    assert set(faults) == set(FAULTS) or SECONDS < 120, faults
    assert all(code == 0 for code in exit_codes.values()), exit_codes


async def inject(fault: str, supervisor: Supervisor, postgres: EmbeddedPostgres,
                 nats: EmbeddedNats) -> None:
    if fault in ROLES:
        supervisor.kill_and_restart(fault)
    elif fault == "nats":
        nats.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(nats.start)
    else:  # every PostgreSQL process at once, as a machine crash would
        assert postgres.proc is not None
        os.killpg(postgres.proc.pid, signal.SIGKILL)
        postgres.proc.wait()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(postgres.start)


async def _drained_both(system: System) -> bool:
    with contextlib.suppress(Exception):
        return all([await _drained(system, projection) for projection in PROJECTIONS])
    return False
