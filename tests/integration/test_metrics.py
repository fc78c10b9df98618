"""/metrics against the real engines: exact counter deltas after a known sequence of requests,
lag figures read from the shared state, and a scrape that still answers with NATS down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from api.metrics import MeteredArtifactService, ingest_context
from core.commands import IngestVersion
from core.ingest_nats import NatsIngestWorker
from core.runtime import EmbeddedNats, free_port
from core.settings import Settings
from projections.parking import ParkingLot
from tests.integration.observed import INGEST, observed_app, sample, version_history_worker
from tests.integration.streams import System, open_system, running, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings.with_overrides(probe_timeout_seconds=1.0)) as system:
        yield system


async def test_ingest_and_request_counters_move_by_exactly_what_was_done(system: System) -> None:
    async with observed_app(system) as app:
        before = await app.metrics()
        ns = f"m{uuid.uuid4().hex[:8]}"
        first = await app.graphql(INGEST, input={"namespace": ns, "name": "a", "text": "hello"})
        assert first.json()["data"]["ingest"]["created"] is True
        again = await app.graphql(INGEST, input={"namespace": ns, "name": "a", "text": "hello"})
        assert again.json()["data"]["ingest"]["created"] is False
        refused = await app.graphql(INGEST, input={"namespace": ns, "name": "a", "text": "x",
                                                   "expectedVersion": 7})
        assert refused.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
        lines = [{"namespace": ns, "name": "b", "text": "12345"},
                 {"namespace": ns, "name": "c", "text": "123"},
                 {"namespace": ns, "name": "b", "text": "zz", "expectedVersion": 9}]
        bulk = await app.http.post("/ingest/bulk", content="\n".join(map(json.dumps, lines)),
                                   headers={"Content-Type": "application/x-ndjson"})
        assert bulk.status_code == 200, bulk.text
        cli = await app.graphql(INGEST, headers={"X-Artifactlog-Client": "cli"},
                                input={"namespace": ns, "name": "d", "text": "from the cli"})
        assert cli.json()["data"]["ingest"]["created"] is True
        after = await app.metrics()

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("artifactlog_ingests_total", path="graphql", outcome="created") == 1
    assert delta("artifactlog_ingests_total", path="graphql", outcome="unchanged") == 1
    assert delta("artifactlog_ingests_total", path="graphql", outcome="rejected") == 1
    assert delta("artifactlog_ingest_bytes_total", path="graphql", outcome="created") == 5
    assert delta("artifactlog_ingest_bytes_total", path="graphql", outcome="unchanged") == 5
    assert delta("artifactlog_ingests_total", path="bulk_http", outcome="created") == 2
    assert delta("artifactlog_ingests_total", path="bulk_http", outcome="rejected") == 1
    assert delta("artifactlog_ingest_bytes_total", path="bulk_http", outcome="created") == 8
    assert delta("artifactlog_ingests_total", path="cli", outcome="created") == 1
    # four GraphQL POSTs answered 200 (a refusal is a GraphQL error, not an HTTP one)
    assert delta("artifactlog_http_requests_total", route="/graphql", method="POST",
                 status="200") == 4
    assert delta("artifactlog_http_request_duration_seconds_count", route="/graphql",
                 method="POST") == 4
    assert delta("artifactlog_http_requests_total", route="/ingest/bulk", method="POST",
                 status="200") == 1
    # the first scrape itself was counted once it had answered
    assert delta("artifactlog_http_requests_total", route="/metrics", method="GET",
                 status="200") == 1


async def test_ingests_over_the_nats_subject_count_as_nats_with_their_id(system: System) -> None:
    service = MeteredArtifactService(system.store,
                                     max_content_bytes=system.settings.max_content_bytes)
    subject = f"t{uuid.uuid4().hex[:8]}.ingest"
    worker = NatsIngestWorker(system.nats, service, subject=subject)
    before = sample_counter("nats", "created")
    stop = asyncio.Event()
    # as api/server.py starts it: every ingest of that task (and its children) is "nats"
    task = asyncio.create_task(worker.run(stop), context=ingest_context("nats"))
    try:
        await wait_until(lambda: _subscribed(system, subject), within=10)
        reply = await system.nats.request(subject, json.dumps(
            [{"namespace": "ns", "name": "n1", "text": "a"},
             {"namespace": "ns", "name": "n2", "text": "b"}]).encode(), timeout=10,
            headers={"X-Correlation-Id": "nats-request-1"})
        assert [r["created"] for r in json.loads(reply.data)] == [True, True]
        events = await system.store.read_after(0, 10)
        assert [e.metadata["correlationId"] for e in events] == ["nats-request-1"] * 2
    finally:
        stop.set()
        await task
    assert sample_counter("nats", "created") - before == 2


def sample_counter(path: str, outcome: str) -> float:
    found = REGISTRY.get_sample_value("artifactlog_ingests_total",
                                      {"path": path, "outcome": outcome})
    return found or 0.0


async def _subscribed(system: System, subject: str) -> bool:
    try:
        await system.nats.request(subject, b"[]", timeout=0.5)
    except Exception:
        return False
    return True


async def test_lag_figures_come_from_the_shared_state(system: System) -> None:
    for i in range(5):
        await system.service.ingest(IngestVersion("ns", f"a{i % 2}", text=f"v{i}"))
    async with observed_app(system) as app:
        found = await app.metrics()
        assert sample(found, "artifactlog_log_head_position") == 5
        assert sample(found, "artifactlog_projection_lag_events",
                      projection="version_history") == 5
        assert sample(found, "artifactlog_projection_lag_seconds",
                      projection="version_history") > 0
        assert sample(found, "artifactlog_scrape_source_up", source="nats") == 1
        assert sample(found, "artifactlog_projection_parked_events",
                      projection="version_history") == 0
        await ParkingLot(system.pool).park("version_history", 0, event_id=str(uuid.uuid4()),
                                           position=99, namespace="ns", name="poison",
                                           error="boom", message="{}")
        assert sample(await app.metrics(), "artifactlog_projection_parked_events",
                      projection="version_history") == 1
        relay = system.relay()
        await relay.resume()
        await relay.publish_pending()
        await system.service.ingest(IngestVersion("ns", "late", text="after the relay ran"))
        found = await app.metrics()
        assert sample(found, "artifactlog_relay_position", relay="relay") == 5
        assert sample(found, "artifactlog_relay_lag_events", relay="relay") == 1
        assert sample(found, "artifactlog_jetstream_stream_messages") == 5
        async with running(version_history_worker(system).run):
            async def caught_up() -> bool:
                found = await app.metrics()
                return sample(found, "artifactlog_projection_position",
                              projection="version_history") == 5
            await wait_until(caught_up, within=30)
        found = await app.metrics()
        # the sixth event is not published yet: the projection lags by exactly that one
        assert sample(found, "artifactlog_projection_lag_events",
                      projection="version_history") == 1
        consumers = {dict(labels)["consumer"] for name, labels in found
                     if name == "artifactlog_jetstream_consumer_pending"}
        assert consumers == {f"version_history-p{p}" for p in range(system.settings.partitions)}
        assert all(value == 0 for (name, _), value in found.items()
                   if name == "artifactlog_jetstream_consumer_pending")


async def test_a_scrape_with_nats_down_answers_in_bounded_time(
        system: System, tmp_path_factory: pytest.TempPathFactory) -> None:
    nats = EmbeddedNats(tmp_path_factory.mktemp("nats-down"), free_port())
    nats.start()
    try:
        async with observed_app(system, nats_url=nats.url) as app:
            assert sample(await app.metrics(), "artifactlog_scrape_source_up", source="nats") == 1
            nats.stop()
            started = time.monotonic()
            found = await app.metrics()
            elapsed = time.monotonic() - started
            assert sample(found, "artifactlog_scrape_source_up", source="nats") == 0
            assert sample(found, "artifactlog_scrape_source_up", source="postgres") == 1
            # projections are reported from their checkpoints alone
            assert sample(found, "artifactlog_scrape_source_up", source="projections") == 1
            assert ("artifactlog_projection_lag_events", (("projection", "version_history"),)
                    ) in found
            assert elapsed < 5, elapsed  # probe_timeout_seconds=1: one NATS wait, not many
    finally:
        with contextlib.suppress(Exception):
            nats.stop()
