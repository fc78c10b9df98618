"""The NATS ingest worker: ingestion by request/reply on ``artifactlog.ingest``.

Producers that already speak NATS send IngestInput JSON (the GraphQL contract's field names)
with ``nc.request(INGEST_SUBJECT, ...)``. Workers subscribe in the queue group
``artifactlog-ingest``: NATS hands each request to one of them, so adding workers adds
throughput. The subject lies outside the events stream's ``artifactlog.events.>``, so
JetStream never captures requests as events.

A message holds one object, answered by one reply object, or several (a JSON array, or
NDJSON), answered by an array in the same order; several are ingested with
``ingest_many(atomic=False)``: each item succeeds or fails on its own. Replies are
``{"created", "version", "position"}`` or ``{"error": {"code", "message"}}``. The actor is the
``Artifactlog-Producer`` header, else "nats". Nothing a producer sends stops a worker:
malformed input gets an error reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from core.batch import IngestResult
from core.commands import IngestVersion
from core.errors import ArtifactlogError, ValidationError
from core.ingest_json import command_from_json, error_json, ingest_each, parse_json, version_json
from core.logs import accepted_correlation_id, bind_correlation_id
from core.services import ArtifactService

INGEST_SUBJECT = "artifactlog.ingest"
QUEUE_GROUP = "artifactlog-ingest"
PRODUCER_HEADER = "Artifactlog-Producer"
CORRELATION_HEADER = "X-Correlation-Id"
DEFAULT_ACTOR = "nats"
# Requests one worker serves at once; past it the subscription's queue waits (back-pressure).
MAX_IN_FLIGHT = 16
INTERNAL_ERROR = {"code": "INTERNAL", "message": "the ingest worker failed; see its log"}

log = logging.getLogger("artifactlog.ingest_nats")


class NatsIngestWorker:
    """Serves ingest requests from NATS until stopped."""

    def __init__(self, nc: NatsClient, service: ArtifactService, *,
                 subject: str = INGEST_SUBJECT, queue: str = QUEUE_GROUP,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.nc = nc
        self.service = service
        self.subject = subject
        self.queue = queue
        self.handled = 0  # requests answered: lets operators (and tests) see the load spread
        self.ready = asyncio.Event()  # set once the server knows the subscription
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve requests until ``stop`` is set, then finish the ones already received."""
        sub = await self.nc.subscribe(self.subject, queue=self.queue, cb=self._dispatch)
        try:
            await self.nc.flush()  # the server has the subscription: requests now reach us
            self.ready.set()
            await stop.wait()
        finally:
            with contextlib.suppress(NatsError):  # the connection is already gone
                await sub.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def answer(self, data: bytes, *, actor: str) -> Any:
        """The reply to one request's payload."""
        try:
            values, many = split_payload(data)
        except ArtifactlogError as exc:
            return {"error": error_json(exc)}
        if not many:
            return await self._one(values[0], actor)
        items = [_command(value, actor) for value in values]
        return [_reply(answer) for answer in await ingest_each(self.service, items)]

    async def _dispatch(self, msg: Msg) -> None:
        # Waiting for a slot here holds the subscription's queue back instead of piling up
        # tasks without bound.
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _serve(self, msg: Msg) -> None:
        actor = (msg.headers or {}).get(PRODUCER_HEADER) or DEFAULT_ACTOR
        # This task's ingests and log lines carry the request's id (or a new one), as over HTTP.
        bind_correlation_id(accepted_correlation_id((msg.headers or {}).get(CORRELATION_HEADER)))
        try:
            reply = await self.answer(msg.data, actor=actor)
        except Exception:  # a bug or an outage costs this request, never the worker
            log.exception("ingest request on %s failed", msg.subject)
            reply = {"error": INTERNAL_ERROR}
        self.handled += 1
        if not msg.reply:
            return  # published without a reply subject: nobody is waiting for the answer
        try:
            await msg.respond(json.dumps(reply, separators=(",", ":")).encode())
        except NatsError:
            log.warning("could not reply to an ingest request on %s", msg.subject)

    async def _one(self, value: Any, actor: str) -> dict[str, Any]:
        try:
            return _reply(await self.service.ingest(_command_or_raise(value, actor)))
        except ArtifactlogError as exc:
            return {"error": error_json(exc)}


def split_payload(data: bytes) -> tuple[list[Any], bool]:
    """The JSON values a payload holds, and whether it held several (array or NDJSON).
    An NDJSON line that does not parse becomes a ValidationError in its place."""
    if not data.strip():
        raise ValidationError("empty message: send an IngestInput JSON object or an array")
    try:
        value = parse_json(data)
    except ValidationError:
        lines = [line for line in data.splitlines() if line.strip()]
        values = [_parsed_or_error(line) for line in lines]
        # NDJSON only if some line is an object on its own; otherwise it is one broken value.
        if len(lines) < 2 or not any(isinstance(v, dict) for v in values):
            raise
        return values, True
    if isinstance(value, list):
        return value, True
    return [value], False


def _parsed_or_error(line: bytes) -> Any:
    try:
        return parse_json(line)
    except ValidationError as exc:
        return exc


def _command_or_raise(value: Any, actor: str) -> IngestVersion:
    if isinstance(value, ArtifactlogError):
        raise value
    return command_from_json(value, actor=actor)


def _command(value: Any, actor: str) -> IngestVersion | ArtifactlogError:
    try:
        return _command_or_raise(value, actor)
    except ArtifactlogError as exc:
        return exc


def _reply(answer: IngestResult | ArtifactlogError) -> dict[str, Any]:
    if isinstance(answer, ArtifactlogError):
        return {"error": error_json(answer)}
    return {"created": answer.created, "version": version_json(answer.version),
            "position": answer.position}
