"""Fault 8: duplicate delivery. Each partition is consumed as the runner does (one loop per
partition, in order) through a consumer with a 1 s AckWait, whose handler is sometimes slow
(acks after AckWait), sometimes never acks, NAKs before applying or NAKs after applying; then
every partition is replayed from stream sequence 1 into the live projections. Both the
version-history tables and ClickHouse must show no duplicate effects and equal a rebuild."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from core.jetstream import partition_subject
from projections.analytics import AnalyticsProjection
from projections.base import Projection
from projections.runner import decode
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import (
    History,
    analyse,
    at_head,
    clickhouse_checksum,
    clickhouse_duplicates,
    converge,
)
from tests.faults.conftest import history_checksum, observe, produce
from tests.faults.figures import scale
from tests.integration.streams import System

pytestmark = pytest.mark.anyio

ACK_WAIT = 1.0
BATCH = 10


@dataclass
class Deliveries:
    delivered: int = 0
    redelivered: int = 0
    naks_before_apply: int = 0
    naks_after_apply: int = 0
    slow_acks: int = 0
    never_acked: int = 0


async def consume(system: System, projections: list[Projection], partition: int,
                  stats: Deliveries, rng: random.Random, *, durable: str) -> None:
    """One partition, in order, until every projection has reached its head."""
    stream = system.settings.stream_name
    await system.js.add_consumer(stream, ConsumerConfig(
        durable_name=durable, filter_subject=partition_subject(system.settings, partition),
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT,
        max_deliver=-1, max_ack_pending=BATCH))  # in order: nothing new while a batch is out
    sub = await system.js.pull_subscribe_bind(durable=durable, stream=stream)
    try:
        while True:
            try:
                messages = await sub.fetch(BATCH, timeout=0.3)
            except (NatsTimeoutError, TimeoutError):
                if all([await at_head(p, system.pool, system.settings)
                        for p in projections]):
                    return
                continue
            stats.delivered += len(messages)
            stats.redelivered += sum(1 for m in messages if m.metadata.num_delivered > 1)
            events = decode(messages).events
            choice = rng.random()
            if choice < 0.15:
                stats.naks_before_apply += 1
                for msg in messages:
                    await msg.nak()
                continue
            for projection in projections:
                await projection.apply(partition, events)
            if choice < 0.3:  # applied, then the handler fails: delivered again at once
                stats.naks_after_apply += 1
                for msg in messages:
                    await msg.nak()
            elif choice < 0.4:  # the handler dies before acking: delivered after AckWait
                stats.never_acked += 1
            else:
                if choice < 0.5:  # a slow handler: the ack comes after AckWait
                    stats.slow_acks += 1
                    await asyncio.sleep(ACK_WAIT * 1.3)
                for msg in messages:
                    await msg.ack()
    finally:
        await sub.unsubscribe()


async def test_redelivered_naked_and_replayed_messages_have_no_duplicate_effects(
    system: System, analytics: AnalyticsProjection, figures: dict[str, Any],
) -> None:
    history = History()
    await produce(system, history, scale(300, 5000))
    await system.relay().publish_pending()
    history_projection = VersionHistoryProjection(system.pool)
    projections: list[Projection] = [history_projection, analytics]
    stats, rng = Deliveries(), random.Random(8)
    started = time.monotonic()
    await asyncio.gather(*[consume(system, projections, p, stats, rng, durable=f"flaky-p{p}")
                           for p in range(system.settings.partitions)])
    seconds = time.monotonic() - started
    checksums = [history_checksum(system), clickhouse_checksum(analytics.clickhouse)]
    before_replay = [await checksum() for checksum in checksums]
    replay = Deliveries()
    for p in range(system.settings.partitions):  # from sequence 1, into the live projections
        await replay_partition(system, projections, p, replay)
    after_replay = [await checksum() for checksum in checksums]
    duplicates = await clickhouse_duplicates(analytics.clickhouse)
    convergence = await converge(list(zip(projections, checksums, strict=True)), system.pool,
                                 system.settings, fault_ended=time.monotonic())
    report = analyse(history, await observe(system, clickhouse=analytics.clickhouse))
    figures.update(report.figures(), **vars(stats), replayed=replay.delivered,
                   seconds=round(seconds, 1), clickhouse_count_minus_uniq=duplicates,
                   replay_changed_nothing=before_replay == after_replay,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert stats.redelivered > 0
    assert duplicates == 0
    assert before_replay == after_replay
    assert replay.delivered == report.log_events
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)


async def replay_partition(system: System, projections: list[Projection], partition: int,
                           stats: Deliveries) -> None:
    """Every message of the partition from sequence 1, applied to the live projections."""
    sub = await system.js.pull_subscribe(
        partition_subject(system.settings, partition), stream=system.settings.stream_name,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE,
                              inactive_threshold=30))
    try:
        while True:
            try:
                messages = await sub.fetch(BATCH * 10, timeout=0.3)
            except (NatsTimeoutError, TimeoutError):
                return
            stats.delivered += len(messages)
            events = decode(messages).events
            for projection in projections:
                await projection.apply(partition, events)
    finally:
        await sub.unsubscribe()
