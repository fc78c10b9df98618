"""JetStream adapter: connection, the events stream, and the publisher the relay uses."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from core.events import RecordedEvent
from core.settings import Settings

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
POSITION_HEADER = "Artifactlog-Position"
TYPE_HEADER = "Artifactlog-Type"
CORRELATION_HEADER = "Artifactlog-Correlation-Id"  # the ingest's id, for consumers' logs


async def connect(url: str, *, name: str) -> NatsClient:
    """A client that keeps reconnecting forever: the relay and workers outlive server restarts."""
    return await nats.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()], name=name,
        max_reconnect_attempts=-1, reconnect_time_wait=0.25, connect_timeout=5,
    )


def partition_of(namespace: str, name: str, partitions: int) -> int:
    """The partition an artifact's events travel in: stable, so per-artifact order holds."""
    return zlib.crc32(f"{namespace}/{name}".encode()) % partitions


def subject_for(settings: Settings, namespace: str, name: str) -> str:
    """``PREFIX.PARTITION.NAMESPACE.NAME``: projection workers each own whole partitions, and
    a subscriber can still filter by namespace (``PREFIX.*.NAMESPACE.>``)."""
    partition = partition_of(namespace, name, settings.partitions)
    return f"{settings.subject_prefix}.{partition}.{namespace}.{name}"


def partition_subject(settings: Settings, partition: int) -> str:
    return f"{settings.subject_prefix}.{partition}.>"


async def ensure_stream(js: JetStreamContext, settings: Settings) -> None:
    """Create the events stream, or bring an existing one's settings up to date."""
    config = StreamConfig(
        name=settings.stream_name,
        subjects=[f"{settings.subject_prefix}.>"],
        storage=StorageType.FILE,
        num_replicas=settings.stream_replicas,
        # JetStream refuses a duplicate window longer than the stream's max age
        duplicate_window=min(settings.duplicate_window_seconds,
                             settings.stream_max_age_seconds or float("inf")),
        discard=DiscardPolicy.OLD,
        # Retention (README "Replay, capture and retention"): the Postgres log and capture
        # files keep history; a consumer behind the window rebuilds from the log. 0 / -1:
        # unlimited.
        max_age=settings.stream_max_age_seconds,
        max_bytes=settings.stream_max_bytes if settings.stream_max_bytes > 0 else -1,
    )
    try:
        await js.stream_info(settings.stream_name)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


TAIL_SCAN_LIMIT = 1000


@dataclass(frozen=True)
class StreamTail:
    position: int
    event_id: str | None


class JetStreamPublisher:
    """Publishes events pipelined, one stream message per event id.

    ``Nats-Msg-Id`` = event id makes a republished event a no-op within the duplicate window;
    ``Nats-Expected-Last-Sequence`` = the stream sequence the previous event got makes the
    stream refuse a message that would land out of position order (after a partly failed
    pipelined batch, or a second relay publishing at the same moment). Not
    ``Nats-Expected-Last-Msg-Id``: a replica restarted after a crash forgets the last message
    id, re-checks the header while applying the leader's entries, and stops with "last msgid
    mismatch" (seen in tests/faults/test_nats_cluster.py); the last sequence it recovers from
    its store. The guard is on once ``last_sequence`` is known (``tail`` sets it). The stream
    checks it before the duplicate window, so only a publisher that resumed from the tail may
    carry it; republishing blindly (None) relies on the window alone.
    """

    def __init__(self, js: JetStreamContext, settings: Settings) -> None:
        self.js = js
        self.settings = settings
        self.last_event_id: str | None = None
        self.last_sequence: int | None = None  # the stream's, as of the last tail or publish
        self.ack_timeout = 10.0

    async def tail(self) -> StreamTail | None:
        """Where the stream ends: the position of the last event the relay published, and the
        message id of the stream's very last message (which the next publish must follow)."""
        info = await self.js.stream_info(self.settings.stream_name)
        self.last_sequence = info.state.last_seq or 0
        if info.state.messages == 0 or not info.state.last_seq:
            return None
        last_id: str | None = None
        seq = info.state.last_seq
        # Anything but the relay publishing here is a mistake, but must not wedge the relay:
        # look back past foreign messages to the last event that carries a position.
        for _ in range(TAIL_SCAN_LIMIT):
            if seq < info.state.first_seq:
                break
            msg = await self.js.get_msg(self.settings.stream_name, seq)
            headers = msg.headers or {}
            if seq == info.state.last_seq:
                last_id = headers.get(MSG_ID)
            if POSITION_HEADER in headers:
                return StreamTail(int(headers[POSITION_HEADER]), last_id)
            seq -= 1
        return StreamTail(0, last_id)

    async def publish(self, events: Sequence[RecordedEvent]) -> None:
        futures = []
        previous = self.last_event_id
        for offset, event in enumerate(events):
            headers = {MSG_ID: str(event.event_id), POSITION_HEADER: str(event.position),
                       TYPE_HEADER: event.type}
            if self.last_sequence is not None:
                headers[EXPECTED_LAST_SEQUENCE] = str(self.last_sequence + offset)
            if correlation_id := event.metadata.get("correlationId"):
                headers[CORRELATION_HEADER] = str(correlation_id)
            payload = json.dumps(event.to_json(), separators=(",", ":")).encode()
            futures.append(await self.js.publish_async(
                subject_for(self.settings, event.namespace, event.name), payload,
                headers=headers))
            previous = str(event.event_id)
        # An ack that never comes (server down mid-batch) must fail the batch, not hang it.
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=self.ack_timeout)
        self.last_event_id = previous
        if acks:
            self.last_sequence = int(acks[-1].seq)


async def first_sequence_after(js: JetStreamContext, stream: str, position: int) -> int | None:
    """The stream sequence of the first event after ``position`` (None: from the start).

    The relay publishes in position order, so positions rise with sequence numbers and a
    binary search over the stream finds the spot in O(log n) lookups.
    """
    if position <= 0:
        return None
    info = await js.stream_info(stream)
    low, high = info.state.first_seq, info.state.last_seq
    if info.state.messages == 0 or await _position_at(js, stream, high) <= position:
        return high + 1 if info.state.messages else None
    while low < high:
        middle = (low + high) // 2
        if await _position_at(js, stream, middle) <= position:
            low = middle + 1
        else:
            high = middle
    return low


async def _position_at(js: JetStreamContext, stream: str, seq: int) -> int:
    msg = await js.get_msg(stream, seq, next=True)
    return int((msg.headers or {})[POSITION_HEADER])
