"""A history checker: what clients were told, against what every store holds.

Clients log each operation as ``ok`` (acknowledged), ``failed`` (a definite refusal: nothing
may have been written) or ``unknown`` (timed out, connection lost, 5xx, UNAVAILABLE: it may
or may not have been written). ``observe`` then reads the Postgres event log, the JetStream
stream, the version-history tables and, if given, ClickHouse's ``events`` table (raw, without
FINAL), and ``analyse`` computes from those observations alone:

- lost: acknowledged operations with no event in the log; log events missing from the
  stream, the read model or ClickHouse;
- duplicates: more than one event per idempotency key; stream messages per event id beyond
  one; read-model rows beyond one per version; ClickHouse ``count() - uniqExact(event_id)``;
- gaps: missing stream versions / version numbers per artifact (in the log and read model);
- each unknown operation resolved to 0 or 1 events through its idempotency key (2+ is a
  duplicate), and failed operations that nevertheless left an event.

Because ``analyse`` sees only the ``Observed`` data, a negative control can hand it a copy
with an event dropped and show what it reports (tests/faults/test_checker.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, Literal

from psycopg_pool import AsyncConnectionPool

from core.clickhouse import ClickHouse
from core.eventlog_pg import PostgresEventStore
from core.events import RecordedEvent
from core.jetstream import partition_of
from core.settings import Settings
from projections.base import Projection
from projections.rebuild import rebuild

Status = Literal["ok", "failed", "unknown"]
# Refusals that guarantee nothing was written; anything else leaves the outcome unknown.
DEFINITE_REFUSALS = frozenset({"VALIDATION", "LIMIT", "CONFLICT", "NOT_FOUND", "STAGE_RULE",
                               "FORBIDDEN", "UNAUTHENTICATED"})


@dataclass
class Op:
    namespace: str
    name: str
    key: str | None  # the idempotency key; None: identified by (namespace, name, number)
    status: Status = "unknown"
    number: int | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def identity(self) -> Any:
        return self.key if self.key else (self.namespace, self.name, self.number)

    def finish(self, status: Status, *, number: int | None = None,
               error: str | None = None) -> None:
        self.status, self.number, self.error = status, number, error
        self.ended = time.monotonic()


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def start(self, namespace: str, name: str, key: str | None = None) -> Op:
        op = Op(namespace, name, key)
        self.ops.append(op)
        return op

    def finish(self, op: Op, status: Status, *, number: int | None = None,
               error: str | None = None) -> None:
        op.finish(status, number=number, error=error)

    def count(self, status: Status) -> int:
        return sum(1 for op in self.ops if op.status == status)


def status_of_code(code: str | None) -> Status:
    return "failed" if code in DEFINITE_REFUSALS else "unknown"


@dataclass
class Observed:
    log: list[RecordedEvent]
    stream: list[dict[str, Any]] | None = None  # read_stream(): eventId, seq, msg_id...
    versions: list[tuple[str, str, int]] | None = None  # vh_versions (namespace, name, number)
    clickhouse_ids: list[str] | None = None  # ClickHouse events.event_id, raw, no FINAL


@dataclass
class Report:
    log_events: int = 0
    acknowledged: int = 0
    failed: int = 0
    unknown: int = 0
    lost_acknowledged: int = 0
    failed_but_written: int = 0
    duplicate_events: int = 0
    unknown_resolved: dict[str, int] = field(default_factory=lambda: {"0": 0, "1": 0, "2+": 0})
    gaps: int = 0
    stream_lost: int | None = None
    stream_duplicates: int | None = None
    stream_out_of_order: int | None = None
    read_model_lost: int | None = None
    read_model_duplicates: int | None = None
    read_model_gaps: int | None = None
    clickhouse_lost: int | None = None
    clickhouse_duplicates: int | None = None
    lost_details: list[Any] = field(default_factory=list)

    def problems(self) -> dict[str, Any]:
        """Every nonzero figure that means lost or doubled data."""
        keys = ("lost_acknowledged", "failed_but_written", "duplicate_events", "gaps",
                "stream_lost", "stream_duplicates", "stream_out_of_order", "read_model_lost",
                "read_model_duplicates", "read_model_gaps", "clickhouse_lost",
                "clickhouse_duplicates")
        found = {k: getattr(self, k) for k in keys if getattr(self, k)}
        if self.unknown_resolved["2+"]:
            found["unknown_resolved_2+"] = self.unknown_resolved["2+"]
        return found

    def figures(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "lost_details"}


def identity_of(event: RecordedEvent) -> Any:
    key = event.metadata.get("idempotencyKey")
    return key if key else (event.namespace, event.name, event.payload.get("number"))


def analyse(history: History, observed: Observed) -> Report:
    report = Report(log_events=len(observed.log), acknowledged=history.count("ok"),
                    failed=history.count("failed"), unknown=history.count("unknown"))
    ingests = [e for e in observed.log if e.type == "VersionIngested"]
    by_identity = Counter(identity_of(e) for e in ingests)
    keyed = Counter(e.metadata["idempotencyKey"] for e in ingests
                    if e.metadata.get("idempotencyKey"))
    report.duplicate_events = sum(n - 1 for n in keyed.values() if n > 1)
    for op in history.ops:
        found = by_identity.get(op.identity(), 0)
        if op.status == "ok" and found == 0:
            report.lost_acknowledged += 1
            report.lost_details.append(op.identity())
        elif op.status == "failed" and found:
            report.failed_but_written += 1
        elif op.status == "unknown":
            report.unknown_resolved["0" if found == 0 else "1" if found == 1 else "2+"] += 1
    report.gaps = _gaps(_group(((e.namespace, e.name), e.stream_version) for e in observed.log))
    report.gaps += _gaps(_group(((e.namespace, e.name), int(e.payload["number"]))
                                for e in ingests))
    ids = [str(e.event_id) for e in observed.log]
    if observed.stream is not None:
        published = [m["eventId"] for m in observed.stream]
        report.stream_lost = len(set(ids) - set(published))
        report.stream_duplicates = len(published) - len(set(published))
        positions = [m["position"] for m in observed.stream]
        report.stream_out_of_order = sum(1 for a, b in pairwise(positions) if b <= a)
    if observed.versions is not None:
        stored = Counter(observed.versions)
        expected = {(e.namespace, e.name, int(e.payload["number"])) for e in ingests}
        report.read_model_lost = len(expected - set(stored))
        report.read_model_duplicates = sum(n - 1 for n in stored.values()) + len(
            set(stored) - expected)
        report.read_model_gaps = _gaps(_group(((ns, n), num) for ns, n, num in stored))
    if observed.clickhouse_ids is not None:
        report.clickhouse_lost = len(set(ids) - set(observed.clickhouse_ids))
        report.clickhouse_duplicates = (len(observed.clickhouse_ids)
                                        - len(set(observed.clickhouse_ids)))
    return report


def _group(pairs: Any) -> dict[Any, list[int]]:
    grouped: dict[Any, list[int]] = defaultdict(list)
    for key, number in pairs:
        grouped[key].append(number)
    return grouped


def _gaps(numbers_by_artifact: dict[Any, list[int]]) -> int:
    """Numbers missing from 1..max, per artifact."""
    return sum(max(numbers) - len(set(numbers)) for numbers in numbers_by_artifact.values())


async def read_log(pool: AsyncConnectionPool, namespaces: list[str] | None = None
                   ) -> list[RecordedEvent]:
    store, events, position = PostgresEventStore(pool), [], 0
    while batch := await store.read_after(position, 10_000, namespaces=namespaces):
        events += batch
        position = batch[-1].position
    return events


async def read_versions(pool: AsyncConnectionPool) -> list[tuple[str, str, int]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT namespace, name, number FROM vh_versions")
        return [(r[0], r[1], int(r[2])) for r in await cur.fetchall()]


async def read_clickhouse_ids(clickhouse: ClickHouse) -> list[str]:
    _, _, rows = await clickhouse.query("SELECT toString(event_id) FROM events")
    return [str(r[0]) for r in rows]


async def clickhouse_duplicates(clickhouse: ClickHouse) -> int:
    """The issue's figure, computed by the engine: rows beyond one per event id, no FINAL."""
    _, _, rows = await clickhouse.query("SELECT count() - uniqExact(event_id) FROM events")
    return int(rows[0][0])


# ------------------------------------------------------------------ convergence


async def at_head(projection: Projection, pool: AsyncConnectionPool, settings: Settings
                  ) -> bool:
    """Every partition's checkpoint has reached the last log event of that partition."""
    heads: dict[int, int] = defaultdict(int)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT namespace, name, max(position) FROM events GROUP BY namespace, name")
        for namespace, name, position in await cur.fetchall():
            partition = partition_of(namespace, name, settings.partitions)
            heads[partition] = max(heads[partition], int(position))
    for partition, head in heads.items():
        if await projection.checkpoint(partition) < head:
            return False
    return True


Checksum = Callable[[], Awaitable[dict[str, str]]]


def pg_checksum(pool: AsyncConnectionPool, tables: tuple[str, ...]) -> Checksum:
    async def checksum() -> dict[str, str]:
        sums = {}
        async with pool.connection() as conn:
            for table in tables:
                cur = await conn.execute(
                    f"SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n'"
                    f" ORDER BY t::text), '')) FROM {table} t")
                row = await cur.fetchone()
                sums[table] = str(row[0]) if row else ""
        return sums
    return checksum


CLICKHOUSE_TABLES = {
    "events": "SELECT * EXCEPT (projected_at) FROM events FINAL",
    "versions": "SELECT * FROM versions FINAL",
    "promotions": "SELECT * FROM promotions FINAL",
    "lineage_edges": "SELECT * FROM lineage_edges FINAL",
    "ingest_stats_per_minute": "SELECT minute, namespace, kind, name, sum(ingests),"
                               " sum(bytes) FROM ingest_stats_per_minute GROUP BY ALL",
}


def clickhouse_checksum(clickhouse: ClickHouse) -> Checksum:
    async def checksum() -> dict[str, str]:
        sums = {}
        for table, sql in CLICKHOUSE_TABLES.items():
            # toString(tuple(*)): cityHash64 of a row with a NULL in it is NULL, which
            # groupBitXor skips (a table of such rows would compare by count alone).
            _, _, rows = await clickhouse.query(
                "SELECT count(), groupBitXor(cityHash64(toString(tuple(*))))"
                f" FROM ({sql})")
            sums[table] = f"{rows[0][0]}:{rows[0][1]}"
        return sums
    return checksum


def tables_differing(live: dict[str, str], rebuilt: dict[str, str]) -> list[str]:
    return sorted(t for t in live.keys() | rebuilt.keys() if live.get(t) != rebuilt.get(t))


@dataclass
class Convergence:
    seconds: float  # fault end -> every projection at the log head
    equal_to_rebuild: bool
    live: dict[str, dict[str, str]]
    rebuilt: dict[str, dict[str, str]]


async def converge(projections: list[tuple[Projection, Checksum]], pool: AsyncConnectionPool,
                   settings: Settings, *, fault_ended: float, within: float = 60.0
                   ) -> Convergence:
    """Wait until every projection is at the head, then compare each with a fresh rebuild
    from the log (checksums of its tables before and after the rebuild)."""
    deadline = time.monotonic() + within
    for projection, _ in projections:
        while not await at_head(projection, pool, settings):
            if time.monotonic() > deadline:
                raise AssertionError(f"{projection.name} did not reach the head in {within}s")
            await asyncio.sleep(0.05)
    seconds = time.monotonic() - fault_ended
    live, rebuilt = {}, {}
    store = PostgresEventStore(pool)
    for projection, checksum in projections:
        live[projection.name] = await checksum()
        await rebuild(projection, store, settings)
        rebuilt[projection.name] = await checksum()
    return Convergence(round(seconds, 3), live == rebuilt, live, rebuilt)
