"""Prometheus metrics (prometheus_client), served at /metrics.

Two kinds, because several processes (API, relay, workers, maybe on other machines) make up
one deployment:

- in-process counters and histograms for what this process does (ingests by path and
  outcome, HTTP requests and their latency), on the library's default registry;
- figures read at scrape time from the shared state (Postgres checkpoints and positions,
  JetStream consumer info), so every API process reports the same relay and projection lag
  whichever process does the work. Each source is bounded by ``probe_timeout_seconds``; a
  source that fails or times out is reported as ``artifactlog_scrape_source_up{source} 0``
  and the rest is still served (a scrape never hangs or fails over NATS being down).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

from core.batch import IngestOutcome, IngestResult
from core.commands import IngestVersion
from core.errors import ArtifactlogError
from core.services import ArtifactService
from core.settings import Settings
from projections.status import ProjectionStatus, StatusQueries

INGESTS = Counter("artifactlog_ingests", "Ingest commands handled by this process, by path "
                  "and outcome (created, unchanged, rejected, failed)", ["path", "outcome"])
INGEST_BYTES = Counter("artifactlog_ingest_bytes", "Content bytes of the versions ingests "
                       "created or found unchanged, by path and outcome", ["path", "outcome"])
REQUESTS = Counter("artifactlog_http_requests", "HTTP requests answered by this process",
                   ["route", "method", "status"])
LATENCY = Histogram("artifactlog_http_request_duration_seconds", "HTTP request latency, from "
                    "the first byte in to the last byte out", ["route", "method"],
                    buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))

# How the ingest in progress reached us: set per request (graphql, bulk_http, cli,
# python_client) by the HTTP middleware and per task for the NATS ingest worker (nats).
_ingest_path: contextvars.ContextVar[str] = contextvars.ContextVar(
    "artifactlog_ingest_path", default="direct")


def bind_ingest_path(path: str) -> contextvars.Token[str]:
    return _ingest_path.set(path)


def reset_ingest_path(token: contextvars.Token[str]) -> None:
    _ingest_path.reset(token)


def ingest_context(path: str) -> contextvars.Context:
    """A context for a task whose ingests all come by ``path`` (asyncio.create_task(context=))."""
    context = contextvars.copy_context()
    context.run(_ingest_path.set, path)
    return context


def count_ingests(results: Sequence[IngestResult | ArtifactlogError | None]) -> None:
    """Count what one call's commands came to (None: failed without an answer)."""
    path = _ingest_path.get()
    for result in results:
        if isinstance(result, IngestResult):
            outcome = "created" if result.created else "unchanged"
            INGESTS.labels(path, outcome).inc()
            INGEST_BYTES.labels(path, outcome).inc(result.version.size)
        else:
            INGESTS.labels(path, "rejected" if result is not None else "failed").inc()


class MeteredArtifactService(ArtifactService):
    """ArtifactService that counts every ingest, whichever path it came by."""

    async def ingest(self, cmd: IngestVersion) -> IngestResult:
        try:
            result = await super().ingest(cmd)
        except ArtifactlogError as exc:
            count_ingests([exc])
            raise
        except Exception:
            count_ingests([None])
            raise
        count_ingests([result])
        return result

    async def ingest_many(self, commands: Sequence[IngestVersion], *,
                          atomic: bool) -> list[IngestOutcome]:
        try:
            outcomes = await super().ingest_many(commands, atomic=atomic)
        except ArtifactlogError as exc:  # atomic: nothing of the call was written
            count_ingests([exc] * len(commands))
            raise
        except Exception:
            count_ingests([None] * len(commands))
            raise
        count_ingests([o.result if o.result is not None else o.error for o in outcomes])
        return outcomes


@dataclass
class Snapshot:
    """What one scrape read from the shared state."""

    families: list[Metric] = field(default_factory=list)
    up: dict[str, bool] = field(default_factory=dict)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        self.families.append(family)
        return family


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self.snapshot.families


class SharedStateMetrics:
    """Reads relay, projection and JetStream figures for one scrape (see module docstring)."""

    def __init__(self, pool: AsyncConnectionPool, js: JetStreamContext,
                 status: StatusQueries, settings: Settings) -> None:
        self.pool = pool
        self.js = js
        self.status = status
        self.settings = settings

    async def snapshot(self) -> Snapshot:
        snap = Snapshot()
        started = time.monotonic()
        timeout = self.settings.probe_timeout_seconds
        sources = {"postgres": (self._postgres(snap), timeout),
                   "nats": (self._jetstream(snap), timeout),
                   # NATS first (bounded), then checkpoints: two timeouts at most
                   "projections": (self._projections(snap), 2 * timeout + 1)}
        results = await asyncio.gather(*(asyncio.wait_for(call, limit)
                                         for call, limit in sources.values()),
                                       return_exceptions=True)
        up = snap.gauge("artifactlog_scrape_source_up", "1 when the source answered this "
                        "scrape in time", ["source"])
        for source, result in zip(sources, results, strict=True):
            snap.up[source] = not isinstance(result, BaseException)
            up.add_metric([source], 1.0 if snap.up[source] else 0.0)
        snap.gauge("artifactlog_scrape_duration_seconds", "How long reading the shared state "
                   "took").add_metric([], time.monotonic() - started)
        return snap

    async def _postgres(self, snap: Snapshot) -> None:
        timeout = self.settings.probe_timeout_seconds
        async with self.pool.connection(timeout=timeout) as conn, conn.transaction():
            await conn.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
            head = await (await conn.execute(
                "SELECT coalesce(max(position), 0) FROM events")).fetchone()
            relays = await (await conn.execute(
                "SELECT r.name, r.position,"
                " (SELECT count(*) FROM events e WHERE e.position > r.position),"
                " (SELECT extract(epoch FROM now() - min(e.recorded_at)) FROM events e"
                "  WHERE e.position > r.position) FROM relay_checkpoints r")).fetchall()
            parked = await (await conn.execute(
                "SELECT projection, count(*) FROM projection_parked"
                " GROUP BY projection")).fetchall()
        assert head is not None
        snap.gauge("artifactlog_log_head_position", "Position of the last event in the "
                   "Postgres event log").add_metric([], head[0])
        position = snap.gauge("artifactlog_relay_position", "Last position the relay "
                              "published and checkpointed", ["relay"])
        lag = snap.gauge("artifactlog_relay_lag_events", "Events in the log the relay has not "
                         "published yet", ["relay"])
        seconds = snap.gauge("artifactlog_relay_lag_seconds", "Age of the oldest event the "
                             "relay has not published (0 when caught up)", ["relay"])
        for name, at, behind, age in relays:
            position.add_metric([name], at)
            lag.add_metric([name], behind)
            seconds.add_metric([name], float(age or 0.0))
        family = snap.gauge("artifactlog_projection_parked_events", "Poison events parked "
                            "for an operator, by projection", ["projection"])
        for name, count in parked:
            family.add_metric([name], count)

    async def _projections(self, snap: Snapshot) -> None:
        found = await self.status.projections_status()
        gauges = _projection_gauges(snap)
        for status in found:
            for gauge, value in zip(gauges, _projection_values(status), strict=True):
                gauge.add_metric([status.name], value)

    async def _jetstream(self, snap: Snapshot) -> None:
        stream = self.settings.stream_name
        info = await self.js.stream_info(stream)
        snap.gauge("artifactlog_jetstream_stream_messages", "Messages in the events stream"
                   ).add_metric([], info.state.messages)
        snap.gauge("artifactlog_jetstream_stream_bytes", "Bytes in the events stream"
                   ).add_metric([], info.state.bytes)
        pending = snap.gauge("artifactlog_jetstream_consumer_pending", "Messages of the "
                             "stream not yet delivered to the consumer", ["consumer"])
        acks = snap.gauge("artifactlog_jetstream_consumer_ack_pending", "Messages delivered "
                          "to the consumer and not yet acknowledged", ["consumer"])
        redelivered = snap.gauge("artifactlog_jetstream_consumer_redelivered", "Messages "
                                 "delivered more than once and not yet acknowledged",
                                 ["consumer"])
        for consumer in await self.js.consumers_info(stream):
            name = consumer.name or ""
            if not consumer.config.durable_name:
                continue  # ephemeral readers (feeds, tests) come and go
            pending.add_metric([name], consumer.num_pending or 0)
            acks.add_metric([name], consumer.num_ack_pending or 0)
            redelivered.add_metric([name], consumer.num_redelivered or 0)


def _projection_gauges(snap: Snapshot) -> list[GaugeMetricFamily]:
    labels = ["projection"]
    return [
        snap.gauge("artifactlog_projection_position", "Every event at or below this position "
                   "is applied", labels),
        snap.gauge("artifactlog_projection_lag_events", "Events in the log above the "
                   "projection's position", labels),
        snap.gauge("artifactlog_projection_lag_seconds", "Age of the oldest event the "
                   "projection has not applied (0 when caught up)", labels),
        snap.gauge("artifactlog_projection_lag_alert", "1 when the lag crosses an alert "
                   "threshold (the status says ALERT)", labels),
        snap.gauge("artifactlog_projection_lag_alert_threshold_events", "The projection's "
                   "lag alert threshold in events", labels),
        snap.gauge("artifactlog_projection_lag_alert_threshold_seconds", "The projection's "
                   "lag alert threshold in seconds", labels),
    ]


def _projection_values(status: ProjectionStatus) -> list[float]:
    limits = status.thresholds
    return [status.position, status.lag, status.lag_seconds or 0.0,
            1.0 if status.alert_reason else 0.0,
            limits.events if limits else float("nan"),
            limits.seconds if limits else float("nan")]


async def exposition(shared: SharedStateMetrics | None) -> bytes:
    """The /metrics body: this process's metrics, then the shared state's."""
    text = generate_latest(REGISTRY)
    if shared is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(await shared.snapshot()))
        text += generate_latest(registry)
    return text


def metrics_source(services: Any, settings: Settings) -> SharedStateMetrics:
    status: StatusQueries = services.status
    return SharedStateMetrics(status.pool, status.js, status, settings)
