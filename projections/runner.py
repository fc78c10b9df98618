"""The projection runner: owned partitions -> durable JetStream consumers -> batches applied
exactly once in effect -> acks.

Each owned partition has a durable pull consumer with explicit acks. On taking a partition
over, the worker recreates that consumer to start right after the projection's own
checkpoint, so the projection's store, not the broker, decides where processing resumes: a
previous owner's unacked or half-applied batch is simply delivered again and skipped up to the
checkpoint. A batch that fails is retried in place (never skipped past); an error that is not
transient is narrowed down to the event that causes it, which is parked with its error while
the partition goes on; later events of that artifact park behind it, keeping its order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from core.events import RecordedEvent
from core.jetstream import POSITION_HEADER, first_sequence_after, partition_subject
from core.relay import RETRYABLE
from core.settings import Settings
from projections.base import Projection
from projections.leases import PartitionLeases
from projections.parking import ParkingLot

log = logging.getLogger("artifactlog.projections")

# The relay's list: a dependency that is down, not an event that is wrong.
TRANSIENT = RETRYABLE
RETRIES_BEFORE_NARROWING = 3
RESUBSCRIBE_WHEN_IDLE_SECONDS = 10.0


@dataclass
class Decoded:
    events: list[RecordedEvent] = field(default_factory=list)
    undecodable: list[tuple[Msg, str]] = field(default_factory=list)


# One decoder for every message: json.loads(bytes) sniffs the encoding and looks up its
# decoder per call; the relay publishes UTF-8 (a bad byte raises UnicodeDecodeError, a
# ValueError: parked like any undecodable message).
_JSON = json.JSONDecoder()


def decode(messages: Sequence[Msg]) -> Decoded:
    decoded = Decoded()
    for msg in messages:
        try:
            decoded.events.append(RecordedEvent.from_json(_JSON.decode(msg.data.decode())))
        except (ValueError, KeyError, TypeError) as exc:
            decoded.undecodable.append((msg, f"undecodable message: {exc!r}"))
    return decoded


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT):
        return True
    # clickhouse-connect reports connection failures as OperationalError
    return type(exc).__name__ == "OperationalError"


class ProjectionWorker:
    def __init__(self, projection: Projection, js: JetStreamContext, settings: Settings,
                 leases: PartitionLeases, parking: ParkingLot, *,
                 rebalance_interval: float = 1.0) -> None:
        self.projection = projection
        self.js = js
        self.settings = settings
        self.leases = leases
        self.parking = parking
        self.rebalance_interval = rebalance_interval
        self.applied = 0
        self.batch_size = max(settings.projection_batch_size, projection.min_batch_size)
        self.loops: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Own partitions and apply them until ``stop`` is set."""
        await self.projection.setup()
        await self.leases.open()
        try:
            while not stop.is_set():
                try:
                    if self.leases.lost:
                        await self._renew_leases()
                    await self._rebalance()
                except TRANSIENT as exc:
                    log.warning("projection=%s rebalance failed: %r", self.projection.name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.rebalance_interval)
        finally:
            for partition in list(self.loops):
                await self._stop_loop(partition)
            await self.leases.close()

    async def _renew_leases(self) -> None:
        """The lease session died with the database: its partition locks are gone and another
        worker may hold them now, so stop every partition loop, then open a new session and
        take partitions again (without this the worker waits on the dead session forever)."""
        log.warning("projection=%s lease session lost; re-acquiring partitions",
                    self.projection.name)
        for partition in list(self.loops):
            await self._stop_loop(partition)
        with contextlib.suppress(Exception):
            await self.leases.close()
        self.leases.conn = None
        await self.leases.open()

    async def _rebalance(self) -> None:
        desired = await self.leases.desired()
        for partition in [p for p in self.loops if p not in desired]:
            await self._stop_loop(partition)
            await self.leases.release(partition)
        for partition in sorted(desired - set(self.loops)):
            if await self.leases.try_acquire(partition):
                stop = asyncio.Event()
                task = asyncio.create_task(self._partition_loop(partition, stop))
                self.loops[partition] = (stop, task)
        for partition, (_, task) in list(self.loops.items()):
            if task.done():  # a loop that died: give the partition back to try again
                self.loops.pop(partition)
                if not task.cancelled():
                    task.exception()  # logged by the loop already; marks it retrieved
                await self.leases.release(partition)

    async def _stop_loop(self, partition: int) -> None:
        stop, task = self.loops.pop(partition)
        stop.set()
        with contextlib.suppress(Exception):
            await task

    async def _partition_loop(self, partition: int, stop: asyncio.Event) -> None:
        try:
            sub = await self._subscribe(partition)
            idle_since = time.monotonic()
            while not stop.is_set():
                try:
                    messages = await sub.fetch(self.batch_size,
                                               timeout=self.settings.projection_max_wait_seconds)
                except (NatsTimeoutError, TimeoutError):
                    if time.monotonic() - idle_since > RESUBSCRIBE_WHEN_IDLE_SECONDS:
                        # A replicated consumer whose leader moved onto a replica that was
                        # catching up can stop delivering (nats-server #5839, seen in
                        # tests/faults/test_nats_cluster.py): recreating it from our own
                        # checkpoint is cheap and loses nothing.
                        with contextlib.suppress(Exception):
                            await sub.unsubscribe()
                        sub = await self._subscribe(partition)
                        idle_since = time.monotonic()
                    continue
                idle_since = time.monotonic()
                messages += await self._linger(sub, len(messages), stop)
                await self._process(partition, messages, stop)
        except Exception:
            log.exception("projection=%s partition=%s loop failed", self.projection.name,
                          partition)
            raise

    async def _linger(self, sub: JetStreamContext.PullSubscription, have: int,
                      stop: asyncio.Event) -> list[Msg]:
        """More messages for a batch that is not full, for up to the projection's linger."""
        more: list[Msg] = []
        deadline = time.monotonic() + self.projection.linger_seconds
        while (have + len(more) < self.batch_size and not stop.is_set()
               and (left := deadline - time.monotonic()) > 0.001):
            try:
                more += await sub.fetch(self.batch_size - have - len(more), timeout=left)
            except (NatsTimeoutError, TimeoutError):
                break
        return more

    async def _subscribe(self, partition: int) -> JetStreamContext.PullSubscription:
        durable = f"{self.projection.name}-p{partition}"
        stream = self.settings.stream_name
        checkpoint = await self.projection.checkpoint(partition)
        start = await first_sequence_after(self.js, stream, checkpoint)
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(stream, durable)
        await self.js.add_consumer(stream, ConsumerConfig(
            durable_name=durable, filter_subject=partition_subject(self.settings, partition),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
            # AckAll: one ack per batch (its last message) instead of one per event; one
            # worker owns the partition (leases), so nothing else's messages are acked by it.
            opt_start_seq=start, ack_policy=AckPolicy.ALL, ack_wait=60, max_deliver=-1,
            max_ack_pending=self.batch_size * 4))
        log.info("projection=%s partition=%s owned; resuming after position %s (seq %s)",
                 self.projection.name, partition, checkpoint, start)
        return await self.js.pull_subscribe_bind(durable=durable, stream=stream)

    async def _process(self, partition: int, messages: list[Msg], stop: asyncio.Event) -> None:
        decoded = decode(messages)
        for msg, error in decoded.undecodable:
            await self._park_message(partition, msg, error)
        backoff = 0.05
        while True:
            try:
                await self._apply_guarded(partition, decoded.events)
                break
            except Exception as exc:
                if not is_transient(exc):
                    await self._narrow_down(partition, decoded.events)
                    break
                log.warning("projection=%s partition=%s transient error %r; retrying",
                            self.projection.name, partition, exc)
                if stop.is_set():
                    return  # unacked: redelivered to whoever owns the partition next
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        if messages:
            # AckAll (see _subscribe): acking the last message acks the batch. Messages arrive
            # on the subscription in delivery order, so the last has the highest consumer
            # sequence (parsing every message's metadata to find it cost ~4 us an event).
            await messages[-1].ack()
        self.applied += len(decoded.events)
        if log.isEnabledFor(logging.DEBUG):  # one line per event: tracing an ingest
            for event in decoded.events:
                log.debug("projection=%s applied position=%s", self.projection.name,
                          event.position, extra={
                              "projection": self.projection.name, "partition": partition,
                              "position": event.position, "event_id": str(event.event_id),
                              "correlation_id": event.metadata.get("correlationId")})

    async def _apply_guarded(self, partition: int, events: Sequence[RecordedEvent]) -> None:
        blocked = await self.parking.blocked_artifacts(self.projection.name)
        todo = [e for e in events if (e.namespace, e.name) not in blocked]
        for event in events:
            if (event.namespace, event.name) in blocked:
                await self._park_event(partition, event, "blocked behind a parked event of "
                                       f"{event.namespace}/{event.name}")
        # A rebuild (another process, maybe) holds the maintenance lock; it will have applied
        # these events too, so waiting and then skipping them by checkpoint is all it takes.
        while not await self.leases.enter_batch():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        try:
            await self.projection.apply(partition, todo)
        finally:
            await self.leases.leave_batch()

    async def _narrow_down(self, partition: int, events: Sequence[RecordedEvent]) -> None:
        """Apply one event at a time; the ones that keep failing are parked."""
        for event in events:
            for attempt in range(RETRIES_BEFORE_NARROWING):
                try:
                    await self._apply_guarded(partition, [event])
                    break
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    if attempt == RETRIES_BEFORE_NARROWING - 1:
                        await self._park_event(partition, event, repr(exc))

    async def _park_event(self, partition: int, event: RecordedEvent, error: str) -> None:
        log.error("projection=%s parked position=%s %s/%s: %s", self.projection.name,
                  event.position, event.namespace, event.name, error)
        await self.parking.park(
            self.projection.name, partition, event_id=str(event.event_id),
            position=event.position, namespace=event.namespace, name=event.name, error=error,
            message=json.dumps(event.to_json()))

    async def _park_message(self, partition: int, msg: Msg, error: str) -> None:
        headers = msg.headers or {}
        log.error("projection=%s parked an undecodable message: %s", self.projection.name, error)
        await self.parking.park(
            self.projection.name, partition,
            event_id=headers.get("Nats-Msg-Id") or f"seq:{msg.metadata.sequence.stream}",
            position=int(headers.get(POSITION_HEADER) or 0), namespace=None, name=None,
            error=error, message=msg.data.decode("utf-8", "replace"))
