"""The HTTP auth middleware trusts a token that authenticated for AUTH_CACHE_SECONDS: a
revoked token is refused within that bound, and nothing but successes is kept."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.auth import AUTH_CACHE_SECONDS, PrincipalCache, TokenAuth
from core.auth import Principal, Scope, TokenService
from core.eventlog_pg import PostgresEventStore

pytestmark = pytest.mark.anyio


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"principal": request.state.principal.name})


@pytest.fixture
async def client(store: PostgresEventStore) -> AsyncIterator[httpx.AsyncClient]:
    # Its own TokenService, as in a server: the test's revokes reach it only through the
    # database, like a revoke by `artifactlog token revoke` in another process.
    app = TokenAuth(Starlette(routes=[Route("/sql", whoami, methods=["POST"])]),
                    TokenService(store.pool), cache_seconds=AUTH_CACHE_SECONDS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        yield http


async def status(http: httpx.AsyncClient, token: str) -> int:
    return (await http.post("/sql", headers={"Authorization": f"Bearer {token}"})).status_code


async def test_a_revoked_token_is_refused_within_the_bound(
        client: httpx.AsyncClient, store: PostgresEventStore, names: str) -> None:
    tokens = TokenService(store.pool)
    token, _ = await tokens.create(f"{names}-ci", ["read"])
    assert await status(client, token) == 200
    await tokens.revoke(f"{names}-ci")
    revoked = time.monotonic()
    while await status(client, token) == 200:
        assert time.monotonic() - revoked <= AUTH_CACHE_SECONDS + 0.5
        await anyio.sleep(0.05)
    assert time.monotonic() - revoked <= AUTH_CACHE_SECONDS + 0.5
    assert await status(client, token) == 401  # and stays refused


async def test_an_unknown_token_is_not_remembered(
        client: httpx.AsyncClient, store: PostgresEventStore, names: str) -> None:
    assert await status(client, "al_" + "b" * 43) == 401
    token, _ = await TokenService(store.pool).create(f"{names}-new", ["read"])
    assert await status(client, token) == 200  # at once, though it just failed elsewhere


def test_the_cache_is_bounded_and_forgets_after_its_time() -> None:
    principal = Principal("ci", frozenset({Scope.READ}))
    cache = PrincipalCache(seconds=60, entries=3)
    for n in range(5):
        cache.put(f"d{n}", principal)
    assert [cache.get(f"d{n}") for n in range(5)] == [None, None, principal, principal,
                                                      principal]
    brief = PrincipalCache(seconds=0.01)
    brief.put("d", principal)
    time.sleep(0.02)
    assert brief.get("d") is None
