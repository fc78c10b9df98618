"""Capture: the event log (and, optionally, version content) as Parquet files for long-term
retention outside the broker, partitioned Hive-style by date and namespace:

    DIR/events/date=2026-11-26/namespace=fraud/part-<first>-<last>.parquet
    DIR/contents/date=2026-11-26/namespace=fraud/part-<first>-<last>.parquet
    DIR/_manifest.json

The partition columns live in the paths (Hive style), not in the files. Events are read
from the Postgres log in pages (``position > manifest position``, which never skips a late
commit, see core/replay_slice.py); each page becomes one file per (date, namespace) and is
committed to the manifest only once its files are durable (core/capture_manifest.py), so a
killed capture resumes without gaps or duplicate rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from psycopg_pool import AsyncConnectionPool

from core import capture_manifest
from core.capture_manifest import Manifest
from core.errors import ValidationError
from core.events import RecordedEvent
from core.ports import EventStore
from core.replay_slice import HistorySlice, read_slice

log = logging.getLogger("artifactlog.capture")

EVENTS_SCHEMA = pa.schema([
    ("position", pa.int64()), ("event_id", pa.string()), ("name", pa.string()),
    ("stream_version", pa.int64()), ("type", pa.string()), ("payload", pa.string()),
    ("metadata", pa.string()), ("recorded_at", pa.timestamp("us", tz="UTC"))])
CONTENTS_SCHEMA = pa.schema([
    ("position", pa.int64()), ("name", pa.string()), ("number", pa.int64()),
    ("digest", pa.string()), ("content_type", pa.string()), ("media_type", pa.string()),
    ("size", pa.int64()), ("data", pa.binary())])  # data null: the bytes were purged


@dataclass(frozen=True)
class CaptureResult:
    position: int
    events: int  # captured by this run
    files: int  # written by this run
    removed: tuple[str, ...] = ()  # uncommitted files of an earlier run, deleted


class Capture:
    def __init__(self, pool: AsyncConnectionPool, store: EventStore, directory: Path, *,
                 content: bool = False, batch_size: int = 10_000) -> None:
        if batch_size < 1:
            raise ValidationError("the batch size must be at least 1")
        self.pool = pool
        self.store = store  # for content bytes, through the content store
        self.directory = directory
        self.content = content
        self.batch_size = batch_size

    def open(self) -> tuple[Manifest, list[str]]:
        """The committed manifest, after deleting what an interrupted run left behind."""
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = capture_manifest.load(self.directory)
        if manifest is None:
            manifest = Manifest(content=self.content)
            capture_manifest.commit(self.directory, manifest)
        elif manifest.content != self.content:
            raise ValidationError(
                f"{self.directory} was captured {'with' if manifest.content else 'without'}"
                " --content; keep that choice (or capture into a new directory)")
        return manifest, capture_manifest.remove_uncommitted(self.directory, manifest)

    async def run_once(self, until: int | None = None) -> CaptureResult:
        """Capture from the manifest position up to ``until`` (None: the head now)."""
        manifest, removed = await asyncio.to_thread(self.open)
        if removed:
            log.warning("capture: removed %d uncommitted file(s) of an interrupted run",
                        len(removed))
        if until is None:
            until = await self.store.head_position()
        events = files = 0
        chosen = HistorySlice(to_position=until)
        async for page in read_slice(self.pool, chosen, page_size=self.batch_size,
                                     after=manifest.position):
            written = await self._write(page)
            manifest = manifest.advanced(page[-1].position, written)
            await asyncio.to_thread(capture_manifest.commit, self.directory, manifest)
            events, files = events + len(page), files + len(written)
        return CaptureResult(manifest.position, events, files, tuple(removed))

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Capture continuously: catch up, then poll every ``interval`` seconds."""
        while not stop.is_set():
            result = await self.run_once()
            if result.events:
                log.info("capture: %d events to position %d in %d files", result.events,
                         result.position, result.files)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _write(self, page: Sequence[RecordedEvent]) -> list[str]:
        groups: dict[tuple[str, str], list[RecordedEvent]] = defaultdict(list)
        for event in page:
            day = f"{event.recorded_at.astimezone(UTC):%Y-%m-%d}"
            groups[(day, event.namespace)].append(event)
        written = []
        for (day, namespace), events in sorted(groups.items()):
            name = f"date={day}/namespace={namespace}/part-{events[0].position:012d}-" \
                   f"{events[-1].position:012d}.parquet"
            table = pa.Table.from_pylist([event_row(e) for e in events], EVENTS_SCHEMA)
            written.append(await asyncio.to_thread(self._put, f"events/{name}", table))
            if self.content:
                rows = [await self._content_row(e) for e in events
                        if e.type == "VersionIngested"]
                if rows:
                    table = pa.Table.from_pylist(rows, CONTENTS_SCHEMA)
                    written.append(await asyncio.to_thread(self._put, f"contents/{name}", table))
        return written

    def _put(self, relative: str, table: pa.Table) -> str:
        """Write a file durably: to a temporary name, fsync, rename, fsync the directory."""
        path = self.directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp, compression="zstd")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        # the file's entry, and the entries of partition directories this write may have made
        for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
            capture_manifest.fsync_directory(directory)
        return relative

    async def _content_row(self, event: RecordedEvent) -> dict[str, Any]:
        payload = event.payload
        return {"position": event.position, "name": event.name, "number": payload["number"],
                "digest": payload["digest"], "content_type": payload.get("content_type"),
                "media_type": payload.get("media_type"), "size": payload.get("size"),
                "data": await self.store.get_content(str(payload["digest"]))}


def event_row(event: RecordedEvent) -> dict[str, Any]:
    return {"position": event.position, "event_id": str(event.event_id), "name": event.name,
            "stream_version": event.stream_version, "type": event.type,
            "payload": json.dumps(dict(event.payload), sort_keys=True, default=str),
            "metadata": json.dumps(dict(event.metadata), sort_keys=True, default=str),
            "recorded_at": event.recorded_at}

