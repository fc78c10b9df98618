"""Fold an artifact starting from its newest usable snapshot, and leave snapshots behind.

A read (as of a position or a time, or the whole stream) starts from the newest snapshot
whose whole prefix is within its bounds and folds only the events after it, with the same
bounds as a plain fold (``EventStore.load_stream``): events 1..S of a usable snapshot all pass
the bounds, so the bounded set is that prefix plus the bounded events after S, and the fold
is the same. A fold that passes a multiple of the interval beyond its start writes the
snapshot there, after the answer (a background task: a reader never waits for the write, and
a failed write only means a later reader folds a little more).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from core.artifact import ArtifactState
from core.ports import EventStore
from core.snapshots import (
    INTERVAL,
    Snapshot,
    SnapshotCache,
    fold_onto,
    state_from_dict,
)
from core.snapshots_pg import PostgresSnapshots

log = logging.getLogger("artifactlog.snapshots")


class SnapshotLoader:
    def __init__(self, events: EventStore, snapshots: PostgresSnapshots | None, *,
                 interval: int = INTERVAL, cache: SnapshotCache | None = None) -> None:
        self.events = events
        self.snapshots = snapshots  # None: no snapshot table (a plain fold every time)
        self.interval = interval
        self.cache = cache if cache is not None else SnapshotCache()
        self._writes: dict[tuple[str, str, int], asyncio.Task[None]] = {}

    async def load(self, namespace: str, name: str, *, to_position: int | None = None,
                   to_time: datetime | None = None) -> ArtifactState:
        """The artifact folded from its events, up to a position and/or a time."""
        start = await self._start(namespace, name, to_position, to_time)
        state = start.state.copy() if start else ArtifactState(namespace, name)
        events = await self.events.load_stream(namespace, name, to_position=to_position,
                                               to_time=to_time,
                                               after_version=state.stream_version)
        taken = fold_onto(start, state, events, self.interval)
        if taken is not None and self.snapshots is not None:
            self._write_later(taken)
        return state

    async def drain(self) -> None:
        """Wait for the snapshot writes under way (tests; a clean shutdown)."""
        while self._writes:
            await asyncio.gather(*self._writes.values(), return_exceptions=True)

    async def _start(self, namespace: str, name: str, to_position: int | None,
                     to_time: datetime | None) -> Snapshot | None:
        if self.snapshots is None:
            return None
        have = self.cache.versions(namespace, name)
        row = await self.snapshots.newest(namespace, name, to_position=to_position,
                                          to_time=to_time, have=have)
        if row is not None and row.state is None:
            cached = self.cache.get(namespace, name, row.stream_version)
            if cached is not None:
                return cached
            # dropped from the cache since we asked: ask again, for the state this time
            row = await self.snapshots.newest(namespace, name, to_position=to_position,
                                              to_time=to_time)
        if row is None or row.state is None:
            return None
        try:
            state = state_from_dict(row.state)
        except (ValueError, KeyError, TypeError):  # a bug, but never a wrong answer: fold all
            log.exception("snapshot %s/%s@%s is unreadable; folding from the start",
                          namespace, name, row.stream_version)
            return None
        snapshot = Snapshot(state, row.high_position, row.high_recorded_at)
        self.cache.put(snapshot)
        return snapshot

    def _write_later(self, snapshot: Snapshot) -> None:
        state = snapshot.state
        key = (state.namespace, state.name, state.stream_version)
        self.cache.put(snapshot)  # this process can start from it at once
        if key in self._writes:  # another read of this process is writing the same row
            return
        task = asyncio.get_running_loop().create_task(self._write(snapshot))
        self._writes[key] = task  # a strong reference until done (tasks are weakly held)
        task.add_done_callback(lambda _: self._writes.pop(key, None))

    async def _write(self, snapshot: Snapshot) -> None:
        assert self.snapshots is not None
        try:
            await self.snapshots.save(snapshot)
        except Exception:  # derived data: a later fold writes it again
            log.warning("could not write snapshot %s/%s@%s", snapshot.state.namespace,
                        snapshot.state.name, snapshot.state.stream_version, exc_info=True)
