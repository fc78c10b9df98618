"""Abusive GraphQL documents: clean errors, fast, never a 5xx or an INTERNAL error; and with
introspection off, no "Did you mean" hint that would leak the schema."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.eventlog_pg import PostgresEventStore
from core.settings import Settings
from tests.abuse.conftest import app_client, error_code

pytestmark = pytest.mark.anyio

MB = 1024 * 1024
DEEP = ('query { artifact(namespace: "n", name: "x") { latest { '
        + "parents { " * 100 + "number" + " }" * 100 + " } } }")
ALIASES = "query { " + " ".join(f"a{i}: __typename" for i in range(10_000)) + " }"
CYCLE = ("query { ...A } fragment A on Query { ...B __typename }"
         " fragment B on Query { ...A }")
SELF_CYCLE = "query { ...A } fragment A on Query { ...A }"
DOCUMENTS: dict[str, str] = {
    "depth 100": DEEP,
    "10,000 aliases": ALIASES,
    "1 MB of tokens": "query { __typename " + "__typename " * (MB // 11) + "}",
    "1 MB of comment": "query { __typename }\n#" + "x" * MB,
    "1 MB string argument": 'query { artifact(namespace: "' + "n" * MB + '", name: "x") { name } }',
    "fragment cycle": CYCLE,
    "fragment self cycle": SELF_CYCLE,
    "10,000 fragments": "query { ...F0 } " + " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(10_000))
        + " fragment F10000 on Query { __typename }",
    "directive flood": "query { __typename" + " @include(if: true)" * 5000 + " }",
    "unterminated": "query { artifact(namespace: ",
    "1,000 operations": " ".join(f"query Q{i} {{ __typename }}" for i in range(1000)),
}


@pytest.fixture
async def http(store: PostgresEventStore, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(store, settings) as http:
        yield http


async def test_abusive_documents_get_clean_errors_fast(http: httpx.AsyncClient,
                                                       figures: dict[str, Any]) -> None:
    seen: dict[str, tuple[int, str | None, float]] = {}
    for name, document in DOCUMENTS.items():
        started = time.monotonic()
        response = await http.post("/graphql", json={"query": document})
        seen[name] = (response.status_code, error_code(response),
                      round(time.monotonic() - started, 2))
    figures.update(documents=len(seen), answers={k: f"{s} {c} {t}s" for k, (s, c, t)
                                                in seen.items()},
                   server_errors=sum(1 for s, c, _ in seen.values()
                                     if s >= 500 or c == "INTERNAL"))
    for name, (status, code, seconds) in seen.items():
        assert status in (200, 400, 413), (name, status, code)
        # None: a valid answer (the 1 MB namespace names no artifact: null)
        assert code in ("LIMIT", "GRAPHQL_VALIDATION", "VALIDATION", None), (name, status, code)
        assert seconds < 5, (name, seconds)


async def test_batched_requests_are_refused(http: httpx.AsyncClient) -> None:
    one = {"query": "query { __typename }"}
    for body in ([one, one], [one] * 1000, [], [[one]]):
        response = await http.post("/graphql", content=json.dumps(body),
                                   headers={"content-type": "application/json"})
        assert response.status_code == 400, (len(body), response.text[:200])


TYPOS = ["query { statu { headPosition } }", "query { status { headPositon } }",
         'query { artifact(namespac: "n", name: "x") { name } }',
         'query { lineage(ref: {namespace: "n", name: "x"}, direction: UPSTREM)'
         " { root { name } } }",
         "query { artifacts { edgs { node { name } } } }",
         "mutation { ingets(input: {namespace: \"n\", name: \"x\"}) { created } }",
         "query { __schema { types { name } } }", 'query { __type(name: "Query") { name } }']


async def test_typos_leak_nothing_with_introspection_off(
    store: PostgresEventStore, settings: Settings, figures: dict[str, Any],
) -> None:
    async with app_client(store, settings.with_overrides(graphql_introspection=False)) as http:
        messages = []
        for document in TYPOS:
            response = await http.post("/graphql", json={"query": document})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body.get("data") is None, document
            messages += [e["message"] for e in body["errors"]]
    figures.update(typos=len(TYPOS), messages=len(messages))
    # A missing required argument is named ("Argument 'Query.artifact(namespace:)' ... is
    # required"): standard validation, not a suggestion; anything else must not name what
    # the client did not write.
    suggestions = [m for m in messages if "is required, but it was not provided" not in m]
    leaked = [m for m in suggestions if "Did you mean" in m or "headPosition" in m
              or "UPSTREAM" in m or "ingest" in m.replace("ingets", "") or "edges" in m]
    figures.update(required_argument_messages=len(messages) - len(suggestions))
    assert leaked == []
