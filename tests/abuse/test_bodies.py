"""Bad request bodies on /graphql, /ingest/bulk and /sql: only 400/413/415/422, or a coded
error inside a 200 (a GraphQL error, a bulk line's error) where the request itself was well
formed; never a 5xx or an INTERNAL error. A 100 MB chunked body is refused early, without the
server reading it all."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.settings import Settings
from tests.abuse.conftest import app_client, error_code
from tests.conftest import Engines

pytestmark = pytest.mark.anyio

JSON, NDJSON = "application/json", "application/x-ndjson"
INGEST = "mutation($i: IngestInput!) { ingest(input: $i) { created } }"
MAX_BODY = 64 * 1024  # the client below runs with this ARTIFACTLOG_MAX_BODY_BYTES
DEEP = "[" * 100_000 + "]" * 100_000
BIG_INT = "1" * 5000


def graphql_with(value: str) -> bytes:
    """A GraphQL ingest whose content is ``value``, spliced in as raw JSON text."""
    return ('{"query": ' + json.dumps(INGEST) + ', "variables": {"i": {"namespace": "bodies",'
            ' "name": "b", "content": ' + value + "}}}").encode()


def line_with(value: str) -> bytes:
    return ('{"namespace": "bodies", "name": "b", "content": ' + value + "}").encode()


def graphql_field(field: str, value: str) -> bytes:
    return graphql_with("1").replace(b'"content": 1', f'"content": 1, "{field}": {value}'.encode())


def line_field(field: str, value: str) -> bytes:
    return line_with("1").replace(b'"content": 1', f'"content": 1, "{field}": {value}'.encode())


OK_STATUS = {400, 413, 415, 422}
# (endpoint, content type, body); the expected answer is the same for all: refused cleanly.
CASES: dict[str, tuple[str, str, bytes]] = {
    "graphql empty": ("/graphql", JSON, b""),
    "graphql limit+1": ("/graphql", JSON, b'{"query": "' + b" " * MAX_BODY + b'"}'),
    "graphql truncated json": ("/graphql", JSON, graphql_with('{"a": [1, 2')[:-3]),
    "graphql invalid utf-8": ("/graphql", JSON, graphql_with('"XX"').replace(b"XX", b"\xff\xfe")),
    "graphql NaN": ("/graphql", JSON, graphql_with("NaN")),
    "graphql Infinity": ("/graphql", JSON, graphql_with("-Infinity")),
    "graphql 1e400": ("/graphql", JSON, graphql_with("1e400")),
    "graphql 5000-digit int": ("/graphql", JSON, graphql_with(BIG_INT)),
    "graphql deep nesting": ("/graphql", JSON, graphql_with(DEEP)),
    "graphql duplicate keys": ("/graphql", JSON, b'{"query": "{ x }", "query": "{ y }"}'),
    "graphql NUL in content": ("/graphql", JSON, graphql_with('{"a": "\\u0000"}')),
    "graphql NUL in key": ("/graphql", JSON, graphql_with('{"\\u0000": 1}')),
    "graphql NUL in name": ("/graphql", JSON, graphql_with("1").replace(b'"b"', b'"\\u0000"')),
    "graphql NUL in metadata": ("/graphql", JSON, graphql_field("metadata", '{"m": "\\u0000"}')),
    "graphql NUL in idempotencyKey": ("/graphql", JSON, graphql_field("idempotencyKey",
                                                                      '"k\\u0000"')),
    "graphql NUL in producer": ("/graphql", JSON, graphql_field("producer", '"p\\u0000"')),
    "graphql NUL in kind": ("/graphql", JSON, graphql_field("kind", '"k\\u0000"')),
    "graphql NUL in text": ("/graphql", JSON, graphql_field("text", '"t\\u0000"')
                            .replace(b'"content": 1, ', b"")),
    "graphql lone surrogate": ("/graphql", JSON, graphql_with('"\\ud800"')),
    "graphql wrong type": ("/graphql", "text/plain", graphql_with("1")),
    "graphql form": ("/graphql", "application/x-www-form-urlencoded", b"query=%7Bx%7D"),
    "graphql not an object": ("/graphql", JSON, b"[1, 2, 3]"),
    "graphql query not a string": ("/graphql", JSON, b'{"query": 42}'),
    "graphql variables not an object": ("/graphql", JSON, b'{"query": "{ x }", "variables": 1}'),
    "bulk empty": ("/ingest/bulk", NDJSON, b""),
    "bulk truncated json": ("/ingest/bulk", NDJSON, line_with('{"a": [1')),
    "bulk invalid utf-8": ("/ingest/bulk", NDJSON, line_with('"x"').replace(b"x", b"\xff")),
    "bulk NaN": ("/ingest/bulk", NDJSON, line_with("NaN")),
    "bulk 1e400": ("/ingest/bulk", NDJSON, line_with("1e400")),
    "bulk 5000-digit int": ("/ingest/bulk", NDJSON, line_with(BIG_INT)),
    "bulk deep nesting": ("/ingest/bulk", NDJSON, line_with(DEEP)),
    "bulk duplicate keys": ("/ingest/bulk", NDJSON, b'{"namespace": "a", "namespace": "b"}'),
    "bulk NUL in content": ("/ingest/bulk", NDJSON, line_with('{"a": "\\u0000"}')),
    "bulk NUL in key": ("/ingest/bulk", NDJSON, line_with('{"\\u0000": 1}')),
    "bulk NUL in metadata": ("/ingest/bulk", NDJSON, line_field("metadata", '{"m": "\\u0000"}')),
    "bulk NUL in idempotencyKey": ("/ingest/bulk", NDJSON, line_field("idempotencyKey",
                                                                      '"k\\u0000"')),
    "bulk NUL in producer": ("/ingest/bulk", NDJSON, line_field("producer", '"p\\u0000"')),
    "bulk lone surrogate": ("/ingest/bulk", NDJSON, line_with('"\\ud800"')),
    "bulk wrong type": ("/ingest/bulk", JSON, line_with("1")),
    "sql empty": ("/sql", "text/plain", b""),
    "sql limit+1": ("/sql", "text/plain", b"SELECT 1 " + b" " * MAX_BODY),
    "sql invalid utf-8": ("/sql", "text/plain", b"SELECT '\xff'"),
    "sql truncated json": ("/sql", JSON, b'{"sql": "SELECT 1'),
    "sql json not an object": ("/sql", JSON, b'["SELECT 1"]'),
    "sql deep nesting": ("/sql", JSON, DEEP.encode()),
    "sql NUL": ("/sql", "text/plain", b"SELECT '\x00'"),
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so that one app serves every case of this module."""
    return "asyncio"


@pytest.fixture(scope="module")
async def http(engines: Engines, chdb_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = engines.settings(max_body_bytes=MAX_BODY)
    assert settings.database_url
    pool = await open_pool(settings.database_url)
    try:
        async with app_client(PostgresEventStore(pool), settings, chdb_path=chdb_path) as http:
            yield http
    finally:
        await pool.close()


def clean_refusal(response: httpx.Response) -> bool:
    """4xx of the allowed kinds, or a 200 carrying only coded, non-INTERNAL errors, or a
    success (a NUL inside JSON content is valid content)."""
    if response.status_code in OK_STATUS:
        return error_code(response) != "INTERNAL"
    if response.status_code != 200:
        return False
    body = response.json()
    if "errors" in body:
        return all(e.get("extensions", {}).get("code") not in (None, "INTERNAL")
                   for e in body["errors"])
    results = body.get("results") if isinstance(body, dict) else None
    if results is not None:
        return all(r.get("error", {}).get("code") in (None, "VALIDATION", "LIMIT")
                   for r in results)
    return bool(body.get("data") or "rows" in body)


ANSWERS: dict[str, str] = {}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_body_is_refused_cleanly(http: httpx.AsyncClient, case: str) -> None:
    path, content_type, body = CASES[case]
    response = await http.post(path, content=body, headers={"content-type": content_type})
    ANSWERS[case] = f"{response.status_code} {error_code(response)}"
    assert clean_refusal(response), response.text[:300]


def test_bad_body_figures(figures: dict[str, Any]) -> None:
    """The answers of the cases above, for RELIABILITY.md."""
    figures.update(inputs=len(ANSWERS), server_errors=sum(
        1 for a in ANSWERS.values() if a.startswith("5") or "INTERNAL" in a),
        answers=dict(ANSWERS))


class Body:
    """A chunked body that counts how much of it the server pulled."""

    def __init__(self, total: int, chunk: bytes) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += len(self.chunk)
            yield self.chunk


@pytest.mark.parametrize(("path", "content_type", "chunk"), [
    ("/graphql", JSON, b" " * 65536),
    ("/sql", "text/plain", b" " * 65536),
    ("/ingest/bulk", NDJSON, b"x" * 65536),  # one line that never ends
    ("/ingest/bulk", NDJSON, b"x\n" * 32768),  # lines that never end
])
async def test_a_chunked_100_mb_body_is_refused_early(
    store: PostgresEventStore, settings: Settings, path: str, content_type: str, chunk: bytes,
    figures: dict[str, Any],
) -> None:
    body = Body(100 * 1024 * 1024, chunk)
    started = time.monotonic()
    async with app_client(store, settings) as http:  # the default limits
        response = await http.post(path, content=body, headers={"content-type": content_type})
    seconds = time.monotonic() - started
    figures.update(path=path, status=response.status_code, read_mb=round(body.sent / 2**20, 1),
                   seconds=round(seconds, 2))
    assert response.status_code == 413, response.text[:300]
    assert body.sent < 40 * 1024 * 1024, "the server read far past its limit"
