"""Shared measuring tools: metrics with goals, percentiles, timed loops, RSS sampling.

Every figure the suite reports is a ``Metric``: the samples of several runs (one sample per
run, taken after a warm-up), summarised as the median and the spread, with the baseline
measured in the same run and the goal from issue 7 next to it.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class Goal:
    """``op`` ">=" or "<=" against ``value``; ``on`` "value" (the median) or "ratio"
    (median / baseline median)."""

    op: str
    value: float
    on: str = "value"
    text: str = ""

    def met(self, median: float, ratio: float | None) -> bool | None:
        measured = ratio if self.on == "ratio" else median
        if measured is None or math.isnan(measured):
            return None
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def describe(self, unit: str) -> str:
        if self.text:
            return self.text
        sign = "≥" if self.op == ">=" else "≤"
        if self.on == "ratio":
            return f"{sign} {self.value:.0%} of baseline"
        return f"{sign} {self.value:,g} {unit}"


def at_least(value: float, text: str = "") -> Goal:
    return Goal(">=", value, "value", text)


def at_most(value: float, text: str = "") -> Goal:
    return Goal("<=", value, "value", text)


def ratio_at_least(value: float) -> Goal:
    return Goal(">=", value, "ratio")


@dataclass
class Metric:
    scenario: str
    name: str
    unit: str
    samples: list[float]
    goal: Goal | None = None
    baseline: Metric | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.median:
            return None
        return self.median / self.baseline.median

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        return {
            "scenario": self.scenario, "name": self.name, "unit": self.unit,
            "samples": self.samples, "median": self.median,
            "min": ordered[0] if ordered else None, "max": ordered[-1] if ordered else None,
            "baseline": None if self.baseline is None else {
                "name": self.baseline.name, "median": self.baseline.median},
            "ratio": self.ratio,
            "goal": None if self.goal is None else self.goal.describe(self.unit),
            "met": None if self.goal is None else self.goal.met(self.median, self.ratio),
            "note": self.note,
        }


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Latencies:
    """Request latencies (seconds) of one run, and the wall time they took."""

    seconds: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.seconds) / self.elapsed if self.elapsed else 0.0

    def ms(self, q: float) -> float:
        return 1000 * percentile(self.seconds, q)


async def closed_loop(clients: int, seconds: float,
                      request: Callable[[int, int], Awaitable[None]]) -> Latencies:
    """``clients`` tasks each sending ``request(client, n)`` back to back for ``seconds``."""
    result = Latencies()
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await request(index, n)
            result.seconds.append(time.perf_counter() - started)
            n += 1

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    result.elapsed = time.monotonic() - started
    return result


async def timed(action: Awaitable[Any]) -> float:
    """Wall seconds of one awaited action."""
    started = time.perf_counter()
    await action
    return time.perf_counter() - started


def process_groups(root: psutil.Process) -> dict[str, list[psutil.Process]]:
    """The processes of one `artifactlog up`: the Python server, its worker processes (one
    group each, named by role: api/workers.py), its postgres processes (postmaster and
    backends) and nats-server."""
    groups: dict[str, list[psutil.Process]] = {"server": [root], "postgres": [],
                                               "nats-server": []}
    for child in root.children(recursive=True):
        try:
            name, cmdline = child.name(), child.cmdline()
        except psutil.Error:
            continue
        if "postgres" in name:
            groups["postgres"].append(child)
        elif "nats" in name:
            groups["nats-server"].append(child)
        elif "run" in cmdline:  # `python -m api.cli run ROLE [--name NAME]`
            role = cmdline[cmdline.index("run") + 1:]
            groups[" ".join(["worker", *(r for r in role if r != "--name")])] = [child]
    return groups


def group_memory(processes: list[psutil.Process]) -> int:
    """Bytes of memory a group holds. Summed RSS would count postgres' shared buffers once
    per backend, so several processes are summed by PSS (shared pages split between the
    processes that map them); a single process reports its RSS."""
    total = 0
    for process in processes:
        try:
            total += (process.memory_full_info().pss if len(processes) > 1
                      else process.memory_info().rss)
        except psutil.Error:
            continue  # a backend that exited while we looked
    return total


class MemorySampler:
    """Samples every group's memory on a thread (psutil blocks) and keeps each peak."""

    def __init__(self, root_pid: int, interval: float = 0.25) -> None:
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> dict[str, int]:
        now = {g: group_memory(p) for g, p in process_groups(self.root).items()}
        for group, value in now.items():
            self.peaks[group] = max(self.peaks.get(group, 0), value)
        return now

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _tree_cpu_seconds() -> float:
    """CPU seconds of this process and every descendant (exited ones through the
    children_* times of the parent that reaped them)."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            t = process.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


class ForeignLoad:
    """How much of the machine other processes used meanwhile (0..1 of all CPUs): a shared
    2-core machine running someone's tests makes every figure here pessimistic, and the
    report says so next to the figures."""

    def __enter__(self) -> ForeignLoad:
        self.started = time.monotonic()
        self.busy, self.ours = _busy_cpu_seconds(), _tree_cpu_seconds()
        self.share = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        capacity = (time.monotonic() - self.started) * (psutil.cpu_count() or 1)
        foreign = (_busy_cpu_seconds() - self.busy) - (_tree_cpu_seconds() - self.ours)
        self.share = max(0.0, foreign / capacity) if capacity else 0.0
