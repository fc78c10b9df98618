"""Each token scope allows exactly its operations through the API, namespace limits hold for
every operation, and a revoked token is refused within the auth cache's bound (api/auth.py)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest

from api.auth import AUTH_CACHE_SECONDS
from core.auth import TokenService
from core.eventlog_pg import PostgresEventStore
from core.settings import Settings
from tests.integration.test_graphql_log import client_for, gql

pytestmark = pytest.mark.anyio

OPERATIONS: dict[str, tuple[str, str]] = {
    # name: (document, the scope it needs)
    "read artifact": ('query($ns: String!) { artifact(namespace: $ns, name: "a") { name } }',
                      "read"),
    "list artifacts": ("query($ns: String!) { artifacts(namespace: $ns) { totalCount } }",
                       "read"),
    "replay": ('query($ns: String!) { replay(namespace: $ns, name: "a") { state } }', "read"),
    "ingest": ('mutation($ns: String!) { ingest(input: {namespace: $ns, name: "a",'
               ' content: {x: 1}, force: true}) { position } }', "write"),
    "promote": ('mutation($ns: String!) { promote(ref: {namespace: $ns, name: "a",'
                " number: 1}) { position } }", "promote"),
    "withdraw": ('mutation($ns: String!) { withdraw(ref: {namespace: $ns, name: "a",'
                 " number: 1}) { position } }", "promote"),
    "rebuild": ('mutation($ns: String!) { rebuildProjection(name: $ns) { events } }', "admin"),
}


async def run(http: httpx.AsyncClient, operation: str, namespace: str) -> str | None:
    """The error code the operation got, or None when it was allowed."""
    body = await gql(http, OPERATIONS[operation][0], ns=namespace)
    if not body.get("errors"):
        return None
    return str(body["errors"][0]["extensions"]["code"])


@pytest.fixture
async def seeded(store: PostgresEventStore, settings: Settings, names: str) -> str:
    async with client_for(store, settings, "admin") as http:
        assert await run(http, "ingest", names) is None
    return names


@pytest.mark.parametrize("scope", ["read", "write", "promote"])
async def test_each_scope_allows_exactly_its_operations(
    store: PostgresEventStore, settings: Settings, seeded: str, scope: str, workers: None
) -> None:
    async with client_for(store, settings, scope) as http:
        for operation, (_, needed) in OPERATIONS.items():
            code = await run(http, operation, seeded)
            if needed == scope:
                assert code in (None, "NOT_FOUND", "STAGE_RULE"), (operation, code)
            else:
                assert code == "FORBIDDEN", (operation, code)


async def test_admin_may_do_everything(store: PostgresEventStore, settings: Settings,
                                       seeded: str) -> None:
    async with client_for(store, settings, "admin") as http:
        for operation in OPERATIONS:
            assert await run(http, operation, seeded) in (None, "NOT_FOUND", "STAGE_RULE")


async def test_a_namespace_limited_token_cannot_touch_other_namespaces(
    store: PostgresEventStore, settings: Settings, seeded: str, names: str
) -> None:
    tokens = TokenService(store.pool)
    token, _ = await tokens.create(f"lim-{names}", ["read", "write", "promote"], ["elsewhere"])
    async with client_for(store, settings, "admin") as admin:
        app = admin._transport  # the same in-process app, another token
        async with httpx.AsyncClient(transport=app, base_url="http://test", headers={
                "Authorization": f"Bearer {token}"}) as http:
            for operation in OPERATIONS:
                assert await run(http, operation, seeded) == "FORBIDDEN", operation
            listed = await gql(http, "query { artifacts { totalCount } }")
            assert listed["data"]["artifacts"]["totalCount"] == 0  # nothing of other spaces
            events = await gql(http, "query { events(first: 1000) { edges { node {"
                                     " namespace } } } }")
            assert {e["node"]["namespace"] for e in events["data"]["events"]["edges"]} <= {
                "elsewhere"}
            sql = await http.post("/sql", content=b"SELECT 1")
            assert sql.status_code == 403


async def test_missing_malformed_and_revoked_tokens_are_refused(
    store: PostgresEventStore, settings: Settings, names: str
) -> None:
    tokens = TokenService(store.pool)
    token, _ = await tokens.create(f"rev-{names}", ["read"])
    async with client_for(store, settings, "admin") as admin:
        transport: Any = admin._transport
        for header in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"},
                       {"Authorization": "Bearer al_" + "x" * 43}):
            async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                         headers=header) as http:
                response = await http.post("/graphql", json={"query": "{ status {"
                                                             " headPosition } }"})
                assert response.status_code == 401, header
                assert response.json()["error"]["code"] == "UNAUTHENTICATED"
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers={
                "Authorization": f"Bearer {token}"}) as http:
            ok = await http.post("/graphql", json={"query": "{ status { headPosition } }"})
            assert ok.status_code == 200
            await tokens.revoke(f"rev-{names}")
            revoked = time.monotonic()
            # The app trusts a token that authenticated for AUTH_CACHE_SECONDS; no longer.
            while (await http.post("/graphql", json={"query": "{ status { headPosition } }"})
                   ).status_code == 200:
                assert time.monotonic() - revoked <= AUTH_CACHE_SECONDS + 0.5
                await anyio.sleep(0.05)
            refused = await http.post("/graphql", json={"query": "{ status { headPosition } }"})
            assert refused.status_code == 401
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/healthz")).status_code == 200
