"""The contract walked with a real GraphQL client (gql) against a running `artifactlog up`:
queries and mutations over HTTP, the event subscription over websockets
(graphql-transport-ws)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from core.runtime import free_port
from tests.e2e.test_up import Up, pids_using

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

VERSION = "namespace name number label stage digest size mediaType metadata createdAt position"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("walk") / "home"
    up = Up(home, free_port())
    try:
        state = json.loads((home / "state.json").read_text())
        yield state["api_url"], state["token"]
    finally:
        up.stop()
        for pid in pids_using(home):
            import os
            import signal
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def client(server: tuple[str, str]) -> AsyncIterator[Any]:
    url, token = server
    transport = HTTPXAsyncTransport(url=f"{url}/graphql",
                                    headers={"Authorization": f"Bearer {token}"})
    async with Client(transport=transport, fetch_schema_from_transport=True) as session:
        yield session


async def run(session: Any, document: str, **variables: Any) -> dict[str, Any]:
    return dict(await session.execute(GraphQLRequest(document, variable_values=variables)))


async def test_walk_the_contract_over_http(client: Any) -> None:
    ingest = f"""mutation($input: IngestInput!) {{ ingest(input: $input) {{ created position
        version {{ {VERSION} parents {{ name number }} children {{ name }} }} }} }}"""
    raw = await run(client, ingest, input={"namespace": "walk", "name": "raw", "kind": "dataset",
                                           "content": [{"id": 1, "v": "a"}],
                                           "metadata": {"key": "id", "team": "fraud"}})
    assert raw["ingest"]["created"] is True
    raw2 = await run(client, ingest, input={"namespace": "walk", "name": "raw",
                                            "content": [{"id": 1, "v": "b"}, {"id": 2, "v": "c"}],
                                            "metadata": {"key": "id", "team": "fraud"},
                                            "expectedVersion": 1, "idempotencyKey": "walk-raw-2"})
    again = await run(client, ingest, input={"namespace": "walk", "name": "raw",
                                             "content": [{"id": 1, "v": "b"}, {"id": 2, "v": "c"}],
                                             "metadata": {"key": "id", "team": "fraud"},
                                             "expectedVersion": 1,
                                             "idempotencyKey": "walk-raw-2"})
    assert again["ingest"]["created"] is False
    assert again["ingest"]["position"] == raw2["ingest"]["position"]
    model = await run(client, ingest, input={
        "namespace": "walk", "name": "model", "kind": "model", "text": "weights",
        "parents": [{"namespace": "walk", "name": "raw", "number": 2}], "producer": "train-1"})
    assert model["ingest"]["version"]["parents"] == [{"name": "raw", "number": 2}]
    promote = """mutation($ref: VersionRefInput!) { promote(ref: $ref, reason: "ok") {
        position version { stage } previous { number } } }"""
    await run(client, promote, ref={"namespace": "walk", "name": "raw", "number": 1})
    promoted = await run(client, promote, ref={"namespace": "walk", "name": "raw", "label": "v2"})
    assert promoted["promote"]["previous"] == {"number": 1}
    withdrawn = await run(client, """mutation { withdraw(ref: {namespace: "walk", name: "raw",
        number: 1}, reason: "bad") { position version { stage } } }""")
    assert withdrawn["withdraw"]["version"]["stage"] == "WITHDRAWN"
    artifact = await run(client, f"""query($p: Int) {{ artifact(namespace: "walk", name: "raw",
        minPosition: $p) {{ kind latest {{ number }} production {{ {VERSION} }}
        version(label: "v1") {{ stage }}
        versions(first: 1) {{ totalCount pageInfo {{ hasNextPage endCursor }}
          edges {{ cursor node {{ number children {{ name }} }} }} }}
        promotions {{ version {{ number }} previous {{ number }} reason actor at position }}
        }} }}""", p=withdrawn["withdraw"]["position"])
    found = artifact["artifact"]
    assert (found["kind"], found["latest"], found["production"]["number"]) == (
        "dataset", {"number": 2}, 2)
    assert found["version"] == {"stage": "WITHDRAWN"}
    assert found["versions"]["totalCount"] == 2
    assert [p["actor"] for p in found["promotions"]] == ["admin", "admin"]
    page2 = await run(client, """query($after: String) { artifact(namespace: "walk",
        name: "raw") { versions(first: 1, after: $after) { edges { node { number
        children { name } } } pageInfo { hasNextPage } } } }""",
                      after=found["versions"]["pageInfo"]["endCursor"])
    assert page2["artifact"]["versions"]["edges"][0]["node"] == {
        "number": 2, "children": [{"name": "model"}]}
    listed = await run(client, """{ artifacts(namespace: "walk", stage: PRODUCTION,
        metadata: {team: "fraud"}) { totalCount edges { node { name } } } }""")
    assert [e["node"]["name"] for e in listed["artifacts"]["edges"]] == ["raw"]
    prefixed = await run(client, """{ artifacts(namespace: "walk", namePrefix: "mo", kind: "model")
        { edges { node { name kind } } } }""")
    assert [e["node"] for e in prefixed["artifacts"]["edges"]] == [
        {"name": "model", "kind": "model"}]
    diff = await run(client, """{ diff(from: {namespace: "walk", name: "raw", number: 1},
        to: {namespace: "walk", name: "raw", number: 2}) { identical summary
        changes { totalCount edges { node { section op path } } } } }""")
    assert diff["diff"]["summary"]["records"] == {"added": 1, "changed": 1}
    lineage = await run(client, """{ lineage(ref: {namespace: "walk", name: "model"},
        direction: UPSTREAM) { root { name } nodes { name } edges { from { name }
        to { name } } } }""")
    assert lineage["lineage"]["edges"] == [{"from": {"name": "raw"}, "to": {"name": "model"}}]
    replay = await run(client, """{ replay(namespace: "walk", name: "raw") { event { type }
        state } }""")
    assert [s["event"]["type"] for s in replay["replay"]] == [
        "VersionIngested", "VersionIngested", "VersionPromoted", "VersionPromoted",
        "VersionWithdrawn"]
    events = await run(client, """{ events(first: 3) { totalCount edges { node { position
        eventId type namespace name streamVersion recordedAt payload metadata } } } }""")
    assert len(events["events"]["edges"]) == 3
    await wait_for_projections(client)
    sql = await run(client, "query($q: String!) { analytics(sql: $q) { columns types rows } }",
                    q="SELECT count() AS n FROM events WHERE namespace = 'walk'")
    assert sql["analytics"]["rows"] == [[6]]  # 3 ingests (one retried), 2 promotions, 1 withdrawal


async def test_errors_carry_codes_over_http(client: Any) -> None:
    with pytest.raises(TransportQueryError) as raised:
        await run(client, """mutation { promote(ref: {namespace: "walk", name: "nothing",
            number: 1}) { position } }""")
    assert raised.value.errors
    assert raised.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def wait_for_projections(client: Any) -> None:
    for _ in range(150):
        status = await run(client, "{ status { headPosition projections { name lag } } }")
        if all(p["lag"] == 0 for p in status["status"]["projections"]):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"projections did not catch up: {status}")


async def test_subscription_catches_up_then_follows_live(server: tuple[str, str],
                                                         client: Any) -> None:
    url, token = server
    first = await run(client, """mutation { ingest(input: {namespace: "live", name: "a",
        content: 1}) { position } }""")
    after = first["ingest"]["position"] - 1
    transport = WebsocketsTransport(url=url.replace("http", "ws") + "/graphql",
                                    init_payload={"token": token},
                                    subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    received: list[dict[str, Any]] = []
    async with Client(transport=transport) as session:
        subscription = GraphQLRequest("""subscription($after: Int) { events(
            afterPosition: $after, namespace: "live") { position type name } }""",
                                      variable_values={"after": after})

        async def collect() -> None:
            async for item in session.subscribe(subscription):
                received.append(item["events"])
                if len(received) == 3:
                    return

        task = asyncio.create_task(collect())
        await asyncio.sleep(0.5)  # caught up on the first; the next two arrive live
        for content in (2, 3):
            await run(client, f"""mutation {{ ingest(input: {{namespace: "live", name: "a",
                content: {content}}}) {{ position }} }}""")
        await asyncio.wait_for(task, 30)
    positions = [e["position"] for e in received]
    assert positions[0] == first["ingest"]["position"]
    assert positions == sorted(positions)
    assert [e["type"] for e in received] == ["VersionIngested"] * 3


async def test_subscription_without_a_token_is_rejected(server: tuple[str, str]) -> None:
    url, _ = server
    transport = WebsocketsTransport(url=url.replace("http", "ws") + "/graphql",
                                    init_payload={"token": "al_" + "x" * 43},
                                    subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    with pytest.raises(Exception, match=r"(?i)unauthenticated|closed|4403|rejected"):
        async with Client(transport=transport) as session:
            await session.execute(gql("{ status { headPosition } }"))
