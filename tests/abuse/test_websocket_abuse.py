"""Websocket abuse: GraphQL subscriptions over graphql-transport-ws at /graphql, against a real
`artifactlog run api` process (uvicorn's websocket stack, not a test transport).

Unauthenticated connections, malformed protocol messages, a subscription flood on one
connection, oversized messages and a client that never reads: each is answered by a clean
protocol close code (44xx, or 1009 for a message too big) or a GraphQL error message, never
an internal-error close (1011) or a dropped connection; the server's memory stays bounded, and
it keeps serving HTTP and websockets afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.auth import TokenService
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.runtime import free_port
from core.settings import Settings
from tests.conftest import new_token, role_process

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PROTOCOL = "graphql-transport-ws"
EVENTS = "subscription($ns: String) { events(namespace: $ns) { position type } }"
FROM_START = "subscription { events(afterPosition: 0) { position namespace name type payload } }"
INTERNAL_ERROR = 1011


class Server:
    def __init__(self, port: int, proc: Any, token: str) -> None:
        self.port, self.proc, self.token = port, proc, token
        self.url = f"ws://127.0.0.1:{port}/graphql"

    def rss_mb(self) -> float:
        return float(psutil.Process(self.proc.pid).memory_info().rss / 2**20)

    async def serves_http(self) -> bool:
        """/healthz and an authenticated GraphQL query both answer."""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}",
                                     timeout=10) as http:
            health = await http.get("/healthz")
            query = await http.post("/graphql", json={"query": "{ __typename }"},
                                    headers={"Authorization": f"Bearer {self.token}"})
        return health.status_code == 200 and query.json() == {"data": {"__typename": "Query"}}

    def open(self, **kwargs: Any) -> Any:
        return connect(self.url, subprotocols=[PROTOCOL], open_timeout=10,  # type: ignore[list-item]
                       **kwargs)


@pytest.fixture(scope="module")
async def server(engines: Any, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[Server]:
    settings: Settings = engines.settings(home=tmp_path_factory.mktemp("ws-abuse"))
    assert settings.database_url
    pool = await open_pool(settings.database_url, max_size=2)
    try:
        token = await new_token(PostgresEventStore(pool), "admin")
    finally:
        await pool.close()
    port = free_port()
    proc = role_process(settings, "api", "--port", str(port))
    served = Server(port, proc, token)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "the api process exited at start"
        try:
            if await served.serves_http():
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the api process did not start"
        await asyncio.sleep(0.2)
    yield served
    proc.terminate()
    assert proc.wait(20) == 0


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def alive(server: Server) -> Iterator[Server]:
    """After each test: the server process still runs (each test also checks it serves)."""
    yield server
    assert server.proc.poll() is None, "the api process died"


async def closed_with(ws: ClientConnection, within: float = 10.0) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        frame = closed.rcvd
        return (frame.code, frame.reason) if frame else (None, "no close frame")
    raise AssertionError("unreachable")


async def init(ws: ClientConnection, token: str) -> None:
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await ws.recv()) == {"type": "connection_ack"}


async def test_unauthenticated_connections_are_closed_4403_or_4401(
    alive: Server, store: PostgresEventStore, figures: dict[str, Any],
) -> None:
    tokens, name = TokenService(store.pool), f"revoked-{uuid.uuid4().hex[:8]}"
    revoked, _ = await tokens.create(name, ["admin"])
    await tokens.revoke(name)
    cases: dict[str, list[dict[str, Any]]] = {
        "revoked token": [{"type": "connection_init", "payload": {"token": revoked}}],
        "no token": [{"type": "connection_init"}],
        "empty payload": [{"type": "connection_init", "payload": {}}],
        "bad token": [{"type": "connection_init", "payload": {"token": "al_" + "A" * 43}}],
        "token not a string": [{"type": "connection_init", "payload": {"token": 12}}],
        "bearer garbage": [{"type": "connection_init",
                            "payload": {"Authorization": "Bearer \x00"}}],
        "subscribe before init": [{"type": "subscribe", "id": "1",
                                   "payload": {"query": EVENTS}}],
    }
    closes = {}
    for case, messages in cases.items():
        async with alive.open() as ws:
            for message in messages:
                await ws.send(json.dumps(message))
            closes[case] = await closed_with(ws)
    figures.update(connections=len(cases), closes={k: v[0] for k, v in closes.items()})
    for case, (code, _) in closes.items():
        expected = 4401 if case == "subscribe before init" else 4403
        assert code == expected, (case, code)
    # no connection_init at all: closed once the init wait is over, not held open
    started = time.monotonic()
    async with alive.open() as ws:
        code, _ = await closed_with(ws, within=30)
    waited = time.monotonic() - started
    figures.update(silent_connection_closed_after_seconds=round(waited, 1))
    assert code == 4408
    assert waited < 10
    assert await alive.serves_http()


MALFORMED: dict[str, str | bytes] = {
    "binary frame": b"\x00\x01\x02",
    "not JSON": "{not json",
    "JSON array": "[1, 2, 3]",
    "JSON number": "42",
    "JSON string": '"connection_init"',
    "JSON null": "null",
    "no type": "{}",
    "type not a string": '{"type": 5}',
    "type a list": '{"type": ["subscribe"]}',
    "unknown type": '{"type": "launch"}',
    "init payload a list": '{"type": "connection_init", "payload": [1]}',
    "invalid UTF-8 text": b"\xff\xfe",  # sent as a binary frame: text must be UTF-8
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "huge integer": '{"type": "ping", "payload": {"n": ' + "9" * 5000 + "}}",
}

AFTER_INIT: dict[str, list[str]] = {
    "subscribe without id": ['{"type": "subscribe", "payload": {"query": "subscription { events { position } }"}}'],  # noqa: E501
    "subscribe without payload": ['{"type": "subscribe", "id": "1"}'],
    "payload a string": ['{"type": "subscribe", "id": "1", "payload": "query"}'],
    "payload a list": ['{"type": "subscribe", "id": "1", "payload": ["query"]}'],
    "query missing": ['{"type": "subscribe", "id": "1", "payload": {}}'],
    "query a number": ['{"type": "subscribe", "id": "1", "payload": {"query": 5}}'],
    "query null": ['{"type": "subscribe", "id": "1", "payload": {"query": null}}'],
    "variables a list": ['{"type": "subscribe", "id": "1", "payload": {"query": "subscription'
                         ' { events { position } }", "variables": [1]}}'],
    "id a number": ['{"type": "subscribe", "id": 7, "payload": {"query": "subscription'
                    ' { events { position } }"}}'],
    "id an object": ['{"type": "subscribe", "id": {"a": 1}, "payload": {"query": "s"}}'],
    "complete without id": ['{"type": "complete"}'],
    "complete unknown id": ['{"type": "complete", "id": "nope"}'],
    "second init": ['{"type": "connection_init", "payload": {}}'],
    "duplicate id": ['{"type": "subscribe", "id": "d", "payload": {"query": "subscription'
                     ' { events { position } }"}}'] * 2,
    "syntax error": ['{"type": "subscribe", "id": "1", "payload": {"query": "subscription {"}}'],
    "unknown field": ['{"type": "subscribe", "id": "1", "payload": {"query": "subscription'
                      ' { nope }"}}'],
    "a mutation": ['{"type": "subscribe", "id": "1", "payload": {"query": "mutation'
                   ' { withdraw(ref: {namespace: \\"x\\", name: \\"y\\", number: 1})'
                   ' { position } }"}}'],
    "variables of the wrong type": ['{"type": "subscribe", "id": "1", "payload": {"query":'
                                    ' "subscription($p: Int) { events(afterPosition: $p)'
                                    ' { position } }", "variables": {"p": "x"}}}'],
}


async def answer_of(ws: ClientConnection, within: float = 5.0) -> tuple[str, Any]:
    """("closed", code) or ("message", the first message), or ("open", None) if the server
    said nothing and kept the connection (a tolerated no-op such as an unknown complete)."""
    try:
        async with asyncio.timeout(within):
            return "message", json.loads(await ws.recv())
    except ConnectionClosed as closed:
        return "closed", closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return "open", None


async def test_malformed_protocol_messages_get_clean_close_codes_or_errors(
    alive: Server, figures: dict[str, Any],
) -> None:
    before = alive.rss_mb()
    answers: dict[str, Any] = {}
    for case, frame in MALFORMED.items():
        async with alive.open(max_size=None) as ws:
            await ws.send(frame)
            answers[case] = await answer_of(ws)
    for case, frames in AFTER_INIT.items():
        async with alive.open() as ws:
            await init(ws, alive.token)
            for frame in frames:
                await ws.send(frame)
            answers[case] = await answer_of(ws, within=2.0)
            if answers[case][0] == "open":  # still usable: a ping is answered
                await ws.send('{"type": "ping"}')
                assert json.loads(await ws.recv()) == {"type": "pong"}, case
    figures.update(messages=len(MALFORMED) + len(AFTER_INIT),
                   answers={k: v[1] if v[0] == "closed" else v[0] for k, v in answers.items()},
                   rss_growth_mb=round(alive.rss_mb() - before, 1))
    for case, (kind, value) in answers.items():
        if kind == "closed":
            assert value is not None, case
            assert 4400 <= value < 4500, (case, value)
        elif case == "a mutation":  # executed, as the protocol allows: a refusal
            assert value["type"] == "next", value
            assert value["payload"]["errors"][0]["message"] == "artifact x/y does not exist"
            assert value["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        elif kind == "message":  # a GraphQL error for that operation
            assert value["type"] == "error", (case, value)
            assert all(error["extensions"]["code"] for error in value["payload"]), (case, value)
    assert answers["duplicate id"] == ("closed", 4409)
    assert answers["second init"] == ("closed", 4429)
    assert answers["syntax error"][0] == "message"  # an error with a code; still open
    assert answers["unknown field"][0] == "message"
    assert await alive.serves_http()


async def test_a_subscription_flood_on_one_connection_is_capped(
    alive: Server, figures: dict[str, Any],
) -> None:
    flood = 1_000
    before = alive.rss_mb()
    refused = 0
    async with alive.open() as ws:
        await init(ws, alive.token)
        for i in range(flood):
            await ws.send(json.dumps({"type": "subscribe", "id": str(i), "payload": {
                "query": EVENTS, "variables": {"ns": f"flood{i}"}}}))
        peak = alive.rss_mb()
        # every refused subscription is answered with an error message; the rest run
        try:
            async with asyncio.timeout(20):
                while refused < flood - 100:
                    message = json.loads(await ws.recv())
                    if message["type"] == "error":
                        refused += 1
        except TimeoutError:
            pass
        peak = max(peak, alive.rss_mb())
        await ws.send('{"type": "ping"}')  # the connection still works
        async with asyncio.timeout(10):
            while json.loads(await ws.recv())["type"] != "pong":
                pass
    figures.update(subscribe_messages=flood, refused=refused, active=flood - refused,
                   rss_before_mb=round(before, 1), rss_peak_mb=round(peak, 1))
    assert flood - refused <= 100, "subscriptions per connection are not capped"
    assert peak - before < 200
    assert await alive.serves_http()


async def test_an_oversized_message_is_refused_with_1009(
    alive: Server, figures: dict[str, Any],
) -> None:
    before = alive.rss_mb()
    sizes = {}
    for mb in (2, 32):
        big = json.dumps({"type": "subscribe", "id": "1", "payload": {
            "query": "subscription { events { position } }", "variables": {
                "pad": "x" * (mb * 2**20)}}})
        async with alive.open(max_size=None) as ws:
            await init(ws, alive.token)
            started = time.monotonic()
            with contextlib.suppress(ConnectionClosed):  # closed while we still send
                await ws.send(big)
            code, _ = await closed_with(ws)
            sizes[f"{mb} MB"] = (code, round(time.monotonic() - started, 2))
    figures.update(closes=sizes, rss_growth_mb=round(alive.rss_mb() - before, 1))
    assert all(code == 1009 for code, _ in sizes.values()), sizes
    assert alive.rss_mb() - before < 100
    assert await alive.serves_http()


async def test_a_client_that_never_reads_does_not_grow_the_server(
    alive: Server, store: PostgresEventStore, figures: dict[str, Any],
) -> None:
    """Subscriptions replaying the whole log to clients that read nothing: the server's
    buffers fill and it waits (TCP backpressure), rather than queueing the log in memory."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{alive.port}", timeout=60,
                                 headers={"Authorization": f"Bearer {alive.token}"}) as http:
        for batch in range(4):  # enough log that a full replay would show in memory
            lines = "\n".join(json.dumps({"namespace": "slowreader", "name": f"a{i % 50}",
                                          "content": {"pad": "y" * 2000, "i": i}})
                              for i in range(batch * 1000, (batch + 1) * 1000))
            response = await http.post("/ingest/bulk", content=lines,
                                       headers={"content-type": "application/x-ndjson"})
            assert response.status_code == 200, response.text
    before = alive.rss_mb()
    sockets = []
    for _ in range(5):
        ws = await connect(alive.url, subprotocols=[PROTOCOL],  # type: ignore[list-item]
                           max_queue=1, open_timeout=10,
                           # the server's close frame waits behind what we never read
                           close_timeout=1)
        await init(ws, alive.token)
        await ws.send(json.dumps({"type": "subscribe", "id": "1",
                                  "payload": {"query": FROM_START}}))
        sockets.append(ws)
    peak = before
    for _ in range(20):  # 5 s of never reading
        await asyncio.sleep(0.25)
        peak = max(peak, alive.rss_mb())
    await asyncio.gather(*(ws.close() for ws in sockets))
    assert await alive.serves_http()
    figures.update(readers=len(sockets), log_events_each=">= 4000",
                   rss_before_mb=round(before, 1), rss_peak_mb=round(peak, 1))
    assert peak - before < 150


async def test_a_namespace_token_subscribes_to_nothing_of_another_namespace(
    alive: Server, store: PostgresEventStore, names: str, figures: dict[str, Any],
) -> None:
    """A token limited to one namespace: a subscription naming another is refused, and the
    unfiltered feed (replayed from position 0) carries none of the other's events."""
    mine, theirs = f"{names}mine", f"{names}theirs"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{alive.port}", timeout=30,
                                 headers={"Authorization": f"Bearer {alive.token}"}) as http:
        for namespace in (theirs, mine):  # the last event is ours: the replay's end marker
            response = await http.post("/ingest/bulk", content=json.dumps(
                {"namespace": namespace, "name": "a", "content": {"secret": namespace}}),
                headers={"content-type": "application/x-ndjson"})
            assert response.status_code == 200, response.text
    limited = await new_token(store, "read", namespaces=[mine])
    async with alive.open() as ws:
        await init(ws, limited)
        await ws.send(json.dumps({"type": "subscribe", "id": "other", "payload": {
            "query": EVENTS, "variables": {"ns": theirs}}}))
        refusal = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(json.dumps({"type": "subscribe", "id": "all", "payload": {
            "query": FROM_START}}))
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            while not any(e["namespace"] == mine for e in seen):
                message = json.loads(await ws.recv())
                if message["id"] == "other":  # the refused one's "complete"
                    continue
                assert message["type"] == "next", message
                seen.append(message["payload"]["data"]["events"])
    figures.update(refusal=refusal["payload"], events_seen=len(seen),
                   of_the_other_namespace=sum(theirs in json.dumps(e) for e in seen))
    assert refusal["id"] == "other"
    assert refusal["type"] in ("error", "next"), refusal
    errors = refusal["payload"] if refusal["type"] == "error" else refusal["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], errors
    assert all(e["namespace"] == mine for e in seen)
    assert not any(theirs in json.dumps(e) for e in seen)
    assert await alive.serves_http()
