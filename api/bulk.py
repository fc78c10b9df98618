"""POST /ingest/bulk: NDJSON in, one result per line out.

The body is read as a stream and cut into lines as they arrive. Every ``group_lines`` lines
(or ``group_bytes`` of them) go to ``ArtifactService.ingest_many(atomic=False)``, so one
transaction stores a whole group, and memory holds one group plus the results, never the
body. Each line is one IngestInput object (the GraphQL contract's field names); a line that is
not JSON, not an object, or refused by the service fails alone, with the code and message
GraphQL would give. Blank lines are skipped; ``line`` numbers count every line of the body.

Limits on the request as a whole answer 413: a line longer than ``max_line_bytes``, or more
than ``max_lines`` lines. Reading stops there: the lines before it have been processed and are
reported in ``results`` (resending them is safe with idempotency keys); nothing from the
offending line on is read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.batch import MAX_METADATA_BYTES, IngestResult
from core.commands import IngestVersion
from core.errors import ArtifactlogError, LimitExceeded, ValidationError
from core.ingest_json import command_from_json, error_json, ingest_each, parse_json
from core.services import ArtifactService

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
LINE_SLACK_BYTES = 64 * 1024  # the JSON around a line's content and metadata

Check = Callable[[IngestVersion], None]  # raises (e.g. Forbidden) to refuse one line


@dataclass(frozen=True)
class BulkLimits:
    max_lines: int = 10_000
    max_line_bytes: int | None = None  # None: room for the largest content the service takes
    group_lines: int = 100
    group_bytes: int = 8 * 1024 * 1024

    def line_bytes(self, service: ArtifactService) -> int:
        if self.max_line_bytes is not None:
            return self.max_line_bytes
        # base64 is the widest way to send content the service would still accept
        return service.max_content_bytes * 4 // 3 + MAX_METADATA_BYTES + LINE_SLACK_BYTES


def bulk_ingest_endpoint(
    service_getter: Callable[[Request], ArtifactService],
    actor_getter: Callable[[Request], str | None] | None = None,
    limits: BulkLimits = BulkLimits(),
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint for ``Route("/ingest/bulk", ..., methods=["POST"])``."""
    async def endpoint(request: Request) -> Response:
        actor = actor_getter(request) if actor_getter else None
        return await handle_bulk(request, service_getter(request), actor=actor, limits=limits)
    return endpoint


async def handle_bulk(
    request: Request, service: ArtifactService, *, actor: str | None,
    limits: BulkLimits = BulkLimits(), check: Check | None = None,
) -> Response:
    """Ingest an NDJSON body line by line (see the module docstring)."""
    if _media_type(request) not in NDJSON_TYPES:
        return _refusal(415, ValidationError(
            "send one IngestInput JSON object per line as application/x-ndjson"))
    batch = _Batch(service, actor, check)
    try:
        async with aclosing(_lines(request.stream(), limits.line_bytes(service))) as lines:
            async for number, line in lines:
                batch.add(number, line, limits.max_lines)
                if batch.full(limits):
                    await batch.flush()
        await batch.flush()
    except LimitExceeded as exc:  # from reading: the service reports refusals per line
        await batch.flush()
        return JSONResponse({"error": error_json(exc), **batch.report.body()}, status_code=413)
    except ArtifactlogError as exc:  # the service could not work at all (e.g. unavailable)
        return JSONResponse({"error": error_json(exc), **batch.report.body()},
                            status_code=exc.http_status)
    if batch.lines == 0:
        return _refusal(400, ValidationError("the body has no lines; send NDJSON"))
    return JSONResponse(batch.report.body())


@dataclass
class _Report:
    results: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    unchanged: int = 0
    failed: int = 0

    def add(self, line: int, answer: IngestResult | ArtifactlogError) -> None:
        if isinstance(answer, ArtifactlogError):
            self.failed += 1
            self.results.append({"line": line, "error": error_json(answer)})
            return
        if answer.created:
            self.created += 1
        else:
            self.unchanged += 1
        v = answer.version
        self.results.append({
            "line": line, "created": answer.created, "namespace": v.namespace, "name": v.name,
            "number": v.number, "label": v.label, "digest": v.digest,
            "position": answer.position})

    def body(self) -> dict[str, Any]:
        return {"results": self.results, "created": self.created,
                "unchanged": self.unchanged, "failed": self.failed}


class _Batch:
    """Parsed lines waiting for the next ingest_many call."""

    def __init__(self, service: ArtifactService, actor: str | None, check: Check | None) -> None:
        self.service, self.actor, self.check = service, actor, check
        self.report = _Report()
        self.lines = 0
        self.pending: list[tuple[int, IngestVersion | ArtifactlogError]] = []
        self.pending_bytes = 0

    def add(self, number: int, line: bytes, max_lines: int) -> None:
        if not line.strip():
            return
        self.lines += 1
        if self.lines > max_lines:
            raise LimitExceeded(f"line {number}: the body has more than {max_lines} lines; "
                                "split it into several requests")
        self.pending.append((number, self._command(line)))
        self.pending_bytes += len(line)

    def full(self, limits: BulkLimits) -> bool:
        return len(self.pending) >= limits.group_lines or self.pending_bytes >= limits.group_bytes

    async def flush(self) -> None:
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        if pending:
            answers = await ingest_each(self.service, [item for _, item in pending])
            for (number, _), answer in zip(pending, answers, strict=True):
                self.report.add(number, answer)

    def _command(self, line: bytes) -> IngestVersion | ArtifactlogError:
        try:
            command = command_from_json(parse_json(line), actor=self.actor)
            if self.check is not None:
                self.check(command)
        except ArtifactlogError as exc:
            return exc
        return command


async def _lines(
    chunks: AsyncIterator[bytes], max_bytes: int
) -> AsyncGenerator[tuple[int, bytes], None]:
    """(line number, line) as the body streams in; LimitExceeded on a line over max_bytes,
    noticed as soon as it grows past it (it is never held whole)."""
    buffer, number = bytearray(), 0
    async for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            number += 1
            _check_length(number, end - start, max_bytes)
            yield number, bytes(buffer[start:end])
            start = end + 1
        del buffer[:start]
        _check_length(number + 1, len(buffer), max_bytes)
    if buffer:
        yield number + 1, bytes(buffer)


def _check_length(number: int, length: int, max_bytes: int) -> None:
    if length > max_bytes:
        raise LimitExceeded(f"line {number} is longer than {max_bytes} bytes")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _refusal(status: int, error: ArtifactlogError) -> JSONResponse:
    return JSONResponse({"error": error_json(error)}, status_code=status)
