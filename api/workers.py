"""`artifactlog up`'s background roles as child processes: ``artifactlog run ROLE`` each.

Why processes. One Python process runs on one core at a time, and in one process the API,
the relay and the projection workers take turns on one event loop: under a bulk ingest the
relay and the projections took most of the API process's time (benchmarks: BENCHMARKS.md).
As processes they run on every core the machine has, exactly as compose.yaml runs them.

What stays in the API process: the analytics projection when ClickHouse is chDB (chDB lets
one process open its data directory, and the API answers analytics queries from it), the
webhook dispatcher and retention (light, mostly idle), the lag watch and lag sampler.

Supervision. A child that exits on its own is started again after a pause that doubles from
one second up to a minute (and resets once it has run for a minute), so a crash loop does not
spin. On stop they get SIGTERM (their graceful stop), and SIGKILL after ``STOP_SECONDS``. If
``up`` itself dies without stopping them (kill -9), PR_SET_PDEATHSIG kills them with SIGKILL:
the engines they talk to are going down with ``up`` too, so a graceful stop would only wait
on dead connections, and every role is built to survive kill -9 (tests/faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.roles import ready_line
from core.runtime import die_with_parent
from core.settings import Settings

log = logging.getLogger("artifactlog.workers")

STOP_SECONDS = 20.0
FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 60.0
HEALTHY_SECONDS = 60.0  # a child that ran this long restarts without the grown pause


@dataclass(frozen=True)
class WorkerRole:
    name: str  # as the logs name it
    argv: tuple[str, ...]  # after `artifactlog run`


RELAY = WorkerRole("relay", ("relay",))
INGEST = WorkerRole("ingest", ("ingest",))


def projection_role(name: str) -> WorkerRole:
    return WorkerRole(f"projection:{name}", ("projection", "--name", name))


PROJECTIONS = ("version_history", "analytics")


def up_topology(settings: Settings) -> dict[str, Any]:
    """``serve`` arguments for `up`: the relay, the NATS ingest worker and every projection
    that does not need the API's chDB as processes; without ``up_worker_processes``, nothing
    (everything runs inside the API process)."""
    if not settings.up_worker_processes:
        return {}
    chdb = settings.effective_clickhouse_url.startswith("chdb://")
    inline = ["analytics"] if chdb else []
    roles = [RELAY, INGEST, *(projection_role(n) for n in PROJECTIONS if n not in inline)]
    return {"with_relay": False, "with_ingest_worker": False, "projections": inline,
            "worker_processes": roles}


class WorkerProcesses:
    """Runs each role as a supervised child process until ``stop`` is set."""

    def __init__(self, settings: Settings, roles: Sequence[WorkerRole]) -> None:
        self.settings = settings
        self.roles = list(roles)
        self._ready = {role.name: asyncio.Event() for role in self.roles}

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._supervise(role, stop) for role in self.roles))

    async def wait_ready(self, seconds: float) -> list[str]:
        """Wait until every worker has said it is ready once (connected to Postgres and
        NATS); the names of those that have not within ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(ready.wait() for ready in self._ready.values())), seconds)
        return [name for name, ready in self._ready.items() if not ready.is_set()]

    async def _supervise(self, role: WorkerRole, stop: asyncio.Event) -> None:
        pause = FIRST_PAUSE_SECONDS
        while not stop.is_set():
            started = time.monotonic()
            proc = await self._start(role)
            log.info("worker %s started (pid %d)", role.name, proc.pid,
                     extra={"role": role.name, "pid": proc.pid})
            relaying = asyncio.create_task(self._relay_output(role, proc))
            waiting = asyncio.create_task(proc.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not waiting.done():  # stop was asked for
                await _terminate(proc, waiting)
                await relaying
                break
            await relaying
            if time.monotonic() - started >= HEALTHY_SECONDS:
                pause = FIRST_PAUSE_SECONDS
            log.warning("worker %s exited with %s; starting it again in %.0f s", role.name,
                        proc.returncode, pause, extra={
                "role": role.name, "pid": proc.pid, "exit_code": proc.returncode,
                "restart_in_seconds": pause})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)

    async def _start(self, role: WorkerRole) -> asyncio.subprocess.Process:
        env = {**os.environ, **self.settings.environment()}
        # Logs (stderr) go where `up`'s go; stdout carries the ready line (run_role).
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api.cli", "run", *role.argv, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(signal.SIGKILL))

    async def _relay_output(self, role: WorkerRole, proc: asyncio.subprocess.Process) -> None:
        """Marks the role ready at its ready line; passes every other line on to stdout."""
        assert proc.stdout is not None
        async for line in proc.stdout:
            if line.strip() == ready_line(role.argv[0]).encode():
                self._ready[role.name].set()
            else:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()


async def _terminate(proc: asyncio.subprocess.Process, waiting: asyncio.Task[int]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(waiting), STOP_SECONDS)
    except TimeoutError:
        log.warning("worker pid %d did not stop; killing it", proc.pid,
                    extra={"pid": proc.pid})
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await waiting
