"""Re-publish a slice of history to a NATS subject, for a consumer under development.

Nothing the projections own is touched: the slice is read from the Postgres log (the system
of record), never from the events stream, and checkpoints are neither read nor written.

Delivery. When a JetStream stream captures the subject, each message is a JetStream publish
and waits for the stream's acknowledgement (the slice lands stored, in order, or the run
fails). Otherwise it is a plain core-NATS publish, at most once, to whoever subscribes at
that moment; the connection is flushed after every page so the run ends only once the server
has everything. The events stream's own subjects are refused: replayed messages there would
reach the projections.

Each message is the event's wire form (as the relay publishes it) with headers naming the
original event (``Artifactlog-Event-Id``, ``Artifactlog-Position``, ``Artifactlog-Type``)
and the run (``Artifactlog-Replay-Id``). No ``Nats-Msg-Id``: a second replay of the same
events within the duplicate window must not be dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool

from core.errors import ValidationError
from core.events import RecordedEvent
from core.jetstream import POSITION_HEADER, TYPE_HEADER
from core.replay_slice import HistorySlice, read_slice
from core.settings import Settings

EVENT_ID_HEADER = "Artifactlog-Event-Id"
REPLAY_ID_HEADER = "Artifactlog-Replay-Id"


@dataclass(frozen=True)
class PublishResult:
    subject: str
    events: int
    seconds: float
    jetstream: bool  # True: acknowledged by the stream that captures the subject


class Pacer:
    """Spaces messages ``1 / rate`` seconds apart on average (no burst beyond one)."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValidationError("the rate must be a positive number of messages per second")
        self.rate = rate
        self.started = time.monotonic()
        self.sent = 0

    async def wait(self) -> None:
        if self.rate is not None:
            delay = self.started + self.sent / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        self.sent += 1


def check_subject(subject: str, settings: Settings) -> None:
    tokens = subject.split(".")
    if not subject or any(not t or t in ("*", ">") or " " in t for t in tokens):
        raise ValidationError(f"{subject!r} is not a subject one can publish to (no wildcards,"
                              " no empty tokens)")
    if subject == settings.subject_prefix or subject.startswith(settings.subject_prefix + "."):
        raise ValidationError(f"{subject!r} belongs to the events stream; replaying there "
                              "would reach the projections: choose another subject")


async def publish_slice(pool: AsyncConnectionPool, nats: NatsClient, settings: Settings,
                        subject: str, chosen: HistorySlice, *, rate: float | None = None
                        ) -> PublishResult:
    """Publish the slice's events to ``subject`` in position order, optionally paced."""
    check_subject(subject, settings)
    js = nats.jetstream()
    try:
        stream = await js.find_stream_name_by_subject(subject)
    except NotFoundError:
        stream = None
    if stream == settings.stream_name:
        raise ValidationError(f"{subject!r} is captured by the events stream {stream}")
    pacer, replay_id, count = Pacer(rate), str(uuid.uuid4()), 0
    async for page in read_slice(pool, chosen):
        for event in page:
            await pacer.wait()
            payload = json.dumps(event.to_json(), separators=(",", ":")).encode()
            if stream is None:
                await nats.publish(subject, payload, headers=headers(event, replay_id))
            else:
                await js.publish(subject, payload, stream=stream,
                                 headers=headers(event, replay_id))
            count += 1
        await nats.flush()
    return PublishResult(subject, count, time.monotonic() - pacer.started, stream is not None)


def headers(event: RecordedEvent, replay_id: str) -> dict[str, str]:
    return {EVENT_ID_HEADER: str(event.event_id), POSITION_HEADER: str(event.position),
            TYPE_HEADER: event.type, REPLAY_ID_HEADER: replay_id}
