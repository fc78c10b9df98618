"""3. Relay: events per second from the Postgres log onto JetStream, against raw nats-py
publishing of the very same messages to the same nats-server.

Each run appends a fresh copy of the bulk workload to the log (not timed), then times the
relay publishing exactly those events into a fresh stream, and the raw baseline publishing
the same payloads and message ids into another fresh stream, one after the other.
"""

from __future__ import annotations

import time
import uuid

from bench.baselines import publish_raw, relay_messages
from bench.common import ratio_at_least
from bench.harness import Bench, Local
from bench.payloads import Versions
from core.events import NewEvent, RecordedEvent
from core.jetstream import JetStreamPublisher, ensure_stream
from core.ports import AppendBatch
from core.relay import Relay

NAME = "relay"
TITLE = "3. Relay: log -> JetStream"
APPEND_BATCH = 1000


async def append(local: Local, events: list[NewEvent]) -> list[RecordedEvent]:
    """Append in batches (not what is measured here) and return the recorded events."""
    recorded: list[RecordedEvent] = []
    for start in range(0, len(events), APPEND_BATCH):
        recorded += await local.store.append(AppendBatch(events[start:start + APPEND_BATCH]))
    # Flush the dirty pages now: a checkpoint during the timed part would compete with
    # JetStream's fsyncs on the same disk (and land on one measurement but not the other).
    async with local.pool.connection() as conn:
        await conn.execute("CHECKPOINT")
    return recorded


async def relay_rate(local: Local, events: list[RecordedEvent]) -> float:
    """Events per second the relay publishes, starting right before ``events``."""
    token = uuid.uuid4().hex[:8]
    settings = local.settings.with_overrides(stream_name=f"BENCH_RELAY_{token}",
                                             subject_prefix=f"benchrelay{token}")
    await ensure_stream(local.js, settings)
    relay = Relay(local.pool, JetStreamPublisher(local.js, settings),
                  batch_size=settings.relay_batch_size, name=f"bench-{token}")
    await relay.resume()
    relay.position = events[0].position - 1  # the log also holds earlier runs' events
    started = time.perf_counter()
    published = await relay.publish_pending()
    elapsed = time.perf_counter() - started
    await local.js.delete_stream(settings.stream_name)
    if published != len(events):
        raise RuntimeError(f"the relay published {published} events, expected {len(events)}")
    return published / elapsed


async def run(bench: Bench) -> None:
    artifacts = bench.size(NAME, "artifacts", quick=1000, full=1000)
    versions = bench.size(NAME, "versions", quick=3, full=100)
    raw: list[float] = []
    relayed: list[float] = []
    async with bench.local() as local:
        async def once(warmup: bool) -> None:
            workload = Versions(f"relay-{uuid.uuid4().hex[:8]}", artifacts,
                                1 if warmup else versions)
            events = await append(local, workload.events())
            messages = relay_messages(events, local.settings)
            raw_rate = await publish_raw(local.settings.nats_url or "", messages,
                                         local.settings.duplicate_window_seconds)
            rate = await relay_rate(local, events)
            if not warmup:
                raw.append(raw_rate)
                relayed.append(rate)

        await bench.repeat(once)
    base = bench.add(NAME, "raw JetStream publish_async, same messages (baseline)", "msgs/s",
                     raw)
    bench.add(NAME, "relay (log -> JetStream)", "events/s", relayed,
              goal=ratio_at_least(0.8), baseline=base)
