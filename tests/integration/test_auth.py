"""API tokens and the auth middleware, against the real embedded Postgres token table."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from api.auth import COOKIE_NAME, TokenAuth
from core.auth import Principal, TokenInfo, TokenService
from core.auth import Scope as TokenScope
from core.db import open_pool
from core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from core.eventlog_pg import PostgresEventStore
from core.settings import Settings

pytestmark = pytest.mark.anyio

MALFORMED = ["", "Bearer", "al_", "x" * 10240, "al_" + "a" * 10240, "al_" + "é" * 43,
             "al_" + "a" * 42, "al_" + "a" * 43 + "\n", "al_" + "a" * 40 + "%2F"]


@pytest.fixture
def tokens(store: PostgresEventStore) -> TokenService:
    return TokenService(store.pool)


async def info_of(tokens: TokenService, name: str) -> TokenInfo:
    return next(info for info in await tokens.list() if info.name == name)


async def test_created_token_authenticates_as_its_principal(tokens: TokenService,
                                                           names: str) -> None:
    token, info = await tokens.create(f"{names}-ci", ["write", "PROMOTE"], [names, "shared"])
    assert token.startswith("al_")
    assert len(token) == 46
    assert info.prefix == token[:9]
    assert info.scopes == {TokenScope.WRITE, TokenScope.PROMOTE}
    assert info.revoked_at is None
    principal = await tokens.authenticate(token)
    assert principal == Principal(f"{names}-ci", frozenset({TokenScope.WRITE, TokenScope.PROMOTE}),
                                  frozenset({names, "shared"}))
    _, everywhere = await tokens.create(f"{names}-admin", [TokenScope.ADMIN])
    assert everywhere.namespaces is None


async def test_only_the_digest_is_stored(tokens: TokenService, store: PostgresEventStore,
                                         names: str) -> None:
    token, info = await tokens.create(f"{names}-ci", ["read"])
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT row_to_json(t)::text, token_hash FROM api_tokens t WHERE name = %s",
            (info.name,))
        row = await cur.fetchone()
    assert row is not None
    stored, digest = row
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored
    assert token[9:] not in stored  # nothing past the display prefix
    assert "token_hash" not in {f.name for f in dataclasses.fields(TokenInfo)}
    listed = await tokens.list()
    assert token not in repr(listed)
    assert digest not in repr(listed)


async def test_a_taken_name_is_a_conflict(tokens: TokenService, names: str) -> None:
    await tokens.create(f"{names}-ci", ["read"])
    with pytest.raises(Conflict, match="already exists"):
        await tokens.create(f"{names}-ci", ["write"])
    await tokens.revoke(f"{names}-ci")
    with pytest.raises(Conflict):  # a revoked name stays the actor it was
        await tokens.create(f"{names}-ci", ["write"])


@pytest.mark.parametrize(("scopes", "namespaces", "message"), [
    (["read", "deploy"], None, "unknown scope 'deploy'"),
    ([], None, "at least one scope"),
    (["admin"], ["fraud"], "admin token cannot be limited"),
    (["read"], [], "at least one namespace"),
    (["read"], ["no spaces"], "namespace 'no spaces' is invalid"),
])
async def test_invalid_requests_are_refused(tokens: TokenService, names: str, scopes: list[str],
                                            namespaces: list[str] | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        await tokens.create(f"{names}-x", scopes, namespaces)
    assert all(info.name != f"{names}-x" for info in await tokens.list())


async def test_an_invalid_name_is_refused(tokens: TokenService) -> None:
    with pytest.raises(ValidationError, match="token name"):
        await tokens.create("bad name!", ["read"])


async def test_a_revoked_token_is_refused_on_the_next_call(tokens: TokenService,
                                                           names: str) -> None:
    token, _ = await tokens.create(f"{names}-ci", ["read"])
    await tokens.authenticate(token)
    await tokens.revoke(f"{names}-ci")
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        await tokens.authenticate(token)
    revoked_at = (await info_of(tokens, f"{names}-ci")).revoked_at
    assert revoked_at is not None
    await tokens.revoke(f"{names}-ci")  # again: a no-op that keeps the first time
    assert (await info_of(tokens, f"{names}-ci")).revoked_at == revoked_at
    with pytest.raises(NotFound):
        await tokens.revoke(f"{names}-nobody")


@pytest.mark.parametrize("token", [*MALFORMED, None, "al_" + "a" * 43])
async def test_malformed_and_unknown_tokens_are_unauthenticated(tokens: TokenService,
                                                                token: str | None) -> None:
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(token)


async def test_last_used_is_written_at_most_once_a_minute(
        tokens: TokenService, store: PostgresEventStore, names: str) -> None:
    token, info = await tokens.create(f"{names}-ci", ["read"])
    assert info.last_used_at is None
    await tokens.authenticate(token)
    first = (await info_of(tokens, info.name)).last_used_at
    assert first is not None
    await tokens.authenticate(token)
    assert (await info_of(tokens, info.name)).last_used_at == first
    async with store.pool.connection() as conn:
        await conn.execute("UPDATE api_tokens SET last_used_at = last_used_at - interval '2 min'"
                           " WHERE name = %s", (info.name,))
    await tokens.authenticate(token)
    later = (await info_of(tokens, info.name)).last_used_at
    assert later is not None
    assert later >= first


async def test_a_database_outage_is_unavailable_not_unauthenticated(settings: Settings) -> None:
    assert settings.database_url
    pool = await open_pool(settings.database_url)
    await pool.close()
    with pytest.raises(Unavailable):
        await TokenService(pool).authenticate("al_" + "a" * 43)


OPERATIONS = {TokenScope.READ: "read", TokenScope.WRITE: "ingest",
              TokenScope.PROMOTE: "promote", TokenScope.ADMIN: "replay"}


@pytest.mark.parametrize("held", list(TokenScope))
def test_each_scope_allows_exactly_its_operations(held: TokenScope) -> None:
    principal = Principal("ci", frozenset({held}), None)
    for needed in TokenScope:
        if held in (needed, TokenScope.ADMIN):
            principal.require(needed, "fraud")
        else:
            with pytest.raises(Forbidden, match=f"token 'ci' lacks the {needed} scope"):
                principal.require(needed, "fraud")
    assert principal.can_read("fraud") == (held in (TokenScope.READ, TokenScope.ADMIN))


def test_a_namespace_limited_principal_is_refused_other_namespaces() -> None:
    principal = Principal("ci", frozenset({TokenScope.READ, TokenScope.WRITE}),
                          frozenset({"fraud"}))
    principal.require(TokenScope.WRITE, "fraud")
    principal.require(TokenScope.READ)  # a list: filtered with can_read
    with pytest.raises(Forbidden, match="token 'ci' may not access namespace 'risk'"):
        principal.require(TokenScope.WRITE, "risk")
    assert principal.can_read("fraud")
    assert not principal.can_read("risk")


# The middleware, around a tiny app that reports the principal it sees.

async def whoami(request: Request) -> JSONResponse:
    principal = getattr(request.state, "principal", None)
    return JSONResponse({"principal": principal.name if principal else None})


@pytest.fixture
async def client(tokens: TokenService) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Route("/healthz", whoami),
                            Route("/graphql", whoami, methods=["GET", "POST"]),
                            Route("/sql", whoami, methods=["POST"])])
    transport = httpx.ASGITransport(app=TokenAuth(app, tokens))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.mark.parametrize("path", ["/graphql", "/sql"])
async def test_no_token_is_401(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json={"query": "{ __typename }"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", [
    *[f"Bearer {token}" for token in MALFORMED], "Bearer al_" + "a" * 43, "Basic dXNlcjpwdw==",
    "", "Bearer  ",
])
async def test_bad_tokens_are_401_never_500(client: httpx.AsyncClient, authorization: str) -> None:
    # Raw UTF-8 bytes: a server hands non-ASCII header bytes through as they came.
    response = await client.post("/graphql", headers={b"Authorization": authorization.encode()})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_public_paths_need_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"principal": None}


async def test_the_app_sees_the_principal(client: httpx.AsyncClient, tokens: TokenService,
                                          names: str) -> None:
    token, _ = await tokens.create(f"{names}-ci", ["read"])
    by_header = await client.post("/sql", headers={"Authorization": f"bearer {token}"})
    assert by_header.json() == {"principal": f"{names}-ci"}
    by_cookie = await client.post("/graphql", headers={"Cookie": f"{COOKIE_NAME}={token}"})
    assert by_cookie.json() == {"principal": f"{names}-ci"}
    await tokens.revoke(f"{names}-ci")
    assert (await client.post("/sql", headers={"Authorization": f"Bearer {token}"})
            ).status_code == 401


async def test_the_session_cookie_counts_only_from_this_servers_pages(
        client: httpx.AsyncClient, tokens: TokenService, names: str) -> None:
    token, _ = await tokens.create(f"{names}-browser", ["write"])
    cookie = {"Cookie": f"{COOKIE_NAME}={token}"}
    own_pages = [{"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                 {"Origin": f"http://{client.base_url.host}"}, {}]
    for extra in own_pages:
        response = await client.post("/graphql", headers={**cookie, **extra})
        assert response.json() == {"principal": f"{names}-browser"}, extra
    other_sites = [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                   {"Origin": "https://evil.example"}, {"Origin": "null"}]
    for extra in other_sites:
        response = await client.post("/graphql", headers={**cookie, **extra})
        assert response.status_code == 401, extra
        assert "only from this server's pages" in response.json()["error"]["message"]
    # a bearer token is not a cookie: a cross-site page cannot make a browser send one
    response = await client.post("/graphql", headers={"Authorization": f"Bearer {token}",
                                                      "Origin": "https://evil.example"})
    assert response.json() == {"principal": f"{names}-browser"}


async def test_graphiql_page_loads_without_a_token(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200
    assert page.json() == {"principal": None}
    # A GET with a query executes it, so it needs a token; so does a GET for JSON.
    query = await client.get("/graphql", params={"query": "{ __typename }"},
                             headers={"Accept": "text/html"})
    assert query.status_code == 401
    assert (await client.get("/graphql", headers={"Accept": "application/json"})
            ).status_code == 401


async def test_the_token_database_down_is_503(settings: Settings) -> None:
    assert settings.database_url
    pool = await open_pool(settings.database_url)
    await pool.close()
    app = TokenAuth(Starlette(routes=[Route("/sql", whoami, methods=["POST"])]), TokenService(pool))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        response = await http.post("/sql", headers={"Authorization": "Bearer al_" + "a" * 43})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "UNAVAILABLE"


async def test_websockets_pass_through_and_shared_state_stays_untouched(
        tokens: TokenService, names: str) -> None:
    token, _ = await tokens.create(f"{names}-ci", ["read"])
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        raise AssertionError("the middleware read the request")

    async def send(message: Message) -> None:
        raise AssertionError(f"the middleware answered by itself: {message}")

    middleware = TokenAuth(app, tokens)
    websocket: Scope = {"type": "websocket", "path": "/graphql", "headers": []}
    await middleware(websocket, receive, send)
    assert seen == [websocket]
    # Servers may hand every request the same lifespan state dict: the principal must land
    # in this request's copy only.
    shared_state: dict[str, Any] = {"lifespan": "state"}
    http: Scope = {"type": "http", "method": "POST", "path": "/sql", "query_string": b"",
                   "headers": [(b"authorization", f"Bearer {token}".encode())],
                   "state": shared_state}
    await middleware(http, receive, send)
    assert seen[1]["state"]["principal"].name == f"{names}-ci"
    assert seen[1]["state"]["lifespan"] == "state"
    assert shared_state == {"lifespan": "state"}
