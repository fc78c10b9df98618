"""The raw limits underneath artifactlog, on the same engines, with the same data.

Each function prepares its input before the clock starts and returns items per second, so
the figure is what the engine and its driver can do, not what our encoding costs.

- ``copy_events``: psycopg COPY of the event rows artifactlog would append into a scratch
  table created ``LIKE events INCLUDING ALL`` (identity position, unique event_id, unique
  (namespace, name, stream_version)), one durable transaction per ``batch`` rows.
- ``publish_raw``: nats-py ``publish_async`` of the relay's very messages (same payload bytes,
  same Nats-Msg-Id) into a fresh file-storage stream on the same nats-server (so with its
  ``sync_interval: always``), all pipelined, every ack awaited.
- ``insert_chdb``: clickhouse-connect inserts of the analytics projection's own rows
  (``projections.analytics.derive``) into copies of its tables, in large blocks.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from nats.js.api import StorageType, StreamConfig

from core.clickhouse import ClickHouse
from core.events import NewEvent, RecordedEvent, to_payload
from core.jetstream import MSG_ID, connect, subject_for
from core.settings import Settings
from projections.analytics import COLUMNS, derive

COPY_BATCH = 1000
CHDB_BLOCK = 10_000


def copy_row(event: NewEvent) -> tuple[Any, ...]:
    return (str(event.event_id), event.namespace, event.name, event.stream_version, event.type,
            json.dumps(to_payload(event.event), separators=(",", ":")),
            json.dumps(dict(event.metadata), separators=(",", ":")))


async def copy_events(database_url: str, events: Sequence[NewEvent],
                      batch: int = COPY_BATCH) -> float:
    """Rows per second, counted when each batch's commit returns (durable)."""
    rows = [copy_row(e) for e in events]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_raw_events"
                           " (LIKE events INCLUDING ALL)")
        await conn.commit()
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            async with conn.cursor() as cur, cur.copy(
                    "COPY bench_raw_events (event_id, namespace, name, stream_version, type,"
                    " payload, metadata) FROM STDIN") as copy:
                for row in rows[start:start + batch]:
                    await copy.write_row(row)
            await conn.commit()
        return len(rows) / (time.perf_counter() - started)


def relay_messages(events: Sequence[RecordedEvent], settings: Settings
                   ) -> list[tuple[str, bytes, str]]:
    """(subject below the prefix, payload, message id) exactly as the relay sends them."""
    prefix = len(settings.subject_prefix) + 1
    return [(subject_for(settings, e.namespace, e.name)[prefix:],
             json.dumps(e.to_json(), separators=(",", ":")).encode(), str(e.event_id))
            for e in events]


async def publish_raw(nats_url: str, messages: Sequence[tuple[str, bytes, str]],
                      duplicate_window: float) -> float:
    """Messages per second, counted when the last ack arrives."""
    nc = await connect(nats_url, name="bench-raw")
    token = uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH_RAW_{token}", f"benchraw{token}"
    try:
        js = nc.jetstream()
        # a fresh stream each time: the same message ids again would be dropped as
        # duplicates, which costs the server less than a real write
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"],
                                         storage=StorageType.FILE,
                                         duplicate_window=duplicate_window))
        started = time.perf_counter()
        acks = [await js.publish_async(f"{prefix}.{subject}", payload, headers={MSG_ID: msg_id})
                for subject, payload, msg_id in messages]
        await asyncio.gather(*acks)
        elapsed = time.perf_counter() - started
        await js.delete_stream(stream)
        return len(messages) / elapsed
    finally:
        await nc.close()


def analytics_blocks(events: Sequence[RecordedEvent], partition_of: Callable[[RecordedEvent], int],
                     block: int = CHDB_BLOCK) -> list[dict[str, list[list[Any]]]]:
    """The analytics rows of ``events`` (derived per partition, as the projection does), cut
    into inserts of about ``block`` events each."""
    by_partition: dict[int, list[RecordedEvent]] = defaultdict(list)
    for event in events:
        by_partition[partition_of(event)].append(event)
    rows: dict[str, list[list[Any]]] = {table: [] for table in COLUMNS}
    for partition, chosen in sorted(by_partition.items()):
        for table, more in derive(chosen, {}, partition).items():
            rows[table] += more
    n = max(1, math.ceil(len(events) / block))
    return [{table: r[i * len(r) // n:(i + 1) * len(r) // n] for table, r in rows.items()}
            for i in range(n)]


async def insert_chdb(dsn: str, blocks: Sequence[dict[str, list[list[Any]]]], events: int
                      ) -> float:
    """Events per second whose rows were inserted into copies of the analytics tables."""
    clickhouse = ClickHouse(dsn, database="bench_raw")
    try:
        for table in COLUMNS:
            # same columns, engine and sort key as the projection's table; no views attached
            await clickhouse.command(
                f"CREATE TABLE IF NOT EXISTS bench_raw.{table} AS default.{table}")
            await clickhouse.command(f"TRUNCATE TABLE bench_raw.{table}")
        started = time.perf_counter()
        for rows in blocks:
            for table, columns in COLUMNS.items():
                if rows[table]:
                    await clickhouse.insert(table, rows[table], columns,
                                            settings={"async_insert": 0})
        return events / (time.perf_counter() - started)
    finally:
        await clickhouse.close()
