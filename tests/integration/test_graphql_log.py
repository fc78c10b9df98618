"""GraphQL over the log: events, replay, lineage, diff, and the limits, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.server import build_services
from core.auth import TokenService
from core.eventlog_pg import PostgresEventStore
from core.jetstream import connect
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.conftest import new_token

pytestmark = pytest.mark.anyio

INGEST = """mutation($input: IngestInput!) { ingest(input: $input) { position
  version { number } } }"""


@pytest.fixture
async def http(store: PostgresEventStore, settings: Settings, workers: None
               ) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(store, settings) as http:
        yield http


def client_for(store: PostgresEventStore, settings: Settings, *scopes: str) -> Any:
    """An HTTP client of the in-process app, with a token of ``scopes`` (default admin)."""
    scopes = scopes or ("admin",)

    class Client:
        async def __aenter__(self) -> httpx.AsyncClient:
            assert settings.nats_url
            self.nc = await connect(settings.nats_url, name="test")
            services = build_services(store.pool, self.nc.jetstream(), settings,
                                      {"version_history": VersionHistoryProjection(store.pool)})
            app = create_app(services, settings, TokenService(store.pool))
            headers = {"Authorization": f"Bearer {await new_token(store, *scopes)}"}
            self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://test", headers=headers)
            return self.http

        async def __aexit__(self, *exc: object) -> None:
            await self.http.aclose()
            await self.nc.close()
    return Client()


async def gql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def ingest(http: httpx.AsyncClient, ns: str, name: str, **fields: Any) -> dict[str, Any]:
    body = await gql(http, INGEST, input={"namespace": ns, "name": name, **fields})
    assert "errors" not in body, body
    return dict(body["data"]["ingest"])


async def test_events_page_through_the_log(http: httpx.AsyncClient, names: str) -> None:
    first = await ingest(http, names, "e", content=1)
    await ingest(http, names, "e", content=2)
    query = """query($after: Int, $first: Int) { events(afterPosition: $after, first: $first) {
        totalCount pageInfo { hasNextPage } edges { node { position type namespace name
        streamVersion payload eventId recordedAt metadata } } } }"""
    body = await gql(http, query, after=first["position"] - 1, first=1)
    page = body["data"]["events"]
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["totalCount"] >= 2
    node = page["edges"][0]["node"]
    assert (node["position"], node["type"], node["namespace"]) == (
        first["position"], "VersionIngested", names)
    assert node["payload"]["number"] == 1


async def test_replay_shows_each_event_and_the_state_after_it(http: httpx.AsyncClient,
                                                              names: str) -> None:
    for i in range(3):
        await ingest(http, names, "r", content=i)
    await gql(http, "mutation($r: VersionRefInput!) { promote(ref: $r) { position } }",
              r={"namespace": names, "name": "r", "number": 2})
    query = """query($ns: String!, $v: Int) { replay(namespace: $ns, name: "r", toVersion: $v) {
        event { type streamVersion } state } }"""
    steps = (await gql(http, query, ns=names))["data"]["replay"]
    assert [s["event"]["type"] for s in steps] == ["VersionIngested"] * 3 + ["VersionPromoted"]
    assert steps[-1]["state"]["production"] == 2
    assert [v["stage"] for v in steps[-1]["state"]["versions"]] == [
        "DRAFT", "PRODUCTION", "DRAFT"]
    assert len((await gql(http, query, ns=names, v=2))["data"]["replay"]) == 2


async def test_lineage_walks_up_and_down_with_a_depth_bound(http: httpx.AsyncClient,
                                                            names: str) -> None:
    await ingest(http, names, "raw", content=[1])
    await ingest(http, names, "clean", content=[2],
                 parents=[{"namespace": names, "name": "raw"}])
    model = await ingest(http, names, "model", content={"w": 1},
                         parents=[{"namespace": names, "name": "clean"}])
    query = """query($ref: VersionRefInput!, $d: LineageDirection!, $depth: Int) {
        lineage(ref: $ref, direction: $d, depth: $depth) { root { name }
        nodes { name number } edges { from { name } to { name } } } }"""
    await gql(http, "query($ns: String!, $m: Int) { artifact(namespace: $ns, name: \"model\","
              " minPosition: $m) { name } }", ns=names, m=model["position"])
    up = (await gql(http, query, ref={"namespace": names, "name": "model"},
                    d="UPSTREAM"))["data"]["lineage"]
    assert up["root"] == {"name": "model"}
    assert sorted(n["name"] for n in up["nodes"]) == ["clean", "model", "raw"]
    assert sorted((e["from"]["name"], e["to"]["name"]) for e in up["edges"]) == [
        ("clean", "model"), ("raw", "clean")]
    shallow = (await gql(http, query, ref={"namespace": names, "name": "raw"},
                         d="DOWNSTREAM", depth=1))["data"]["lineage"]
    assert [(e["from"]["name"], e["to"]["name"]) for e in shallow["edges"]] == [
        ("raw", "clean")]


async def test_diff_of_records_metadata_and_text(http: httpx.AsyncClient, names: str) -> None:
    await ingest(http, names, "d", content=[{"id": 1, "x": "a"}, {"id": 2, "x": "b"}],
                 metadata={"key": "id", "owner": "ana"})
    await ingest(http, names, "d", content=[{"id": 2, "x": "B"}, {"id": 3, "x": "c", "y": 1}],
                 metadata={"key": "id", "owner": "bo"})
    query = """query($a: VersionRefInput!, $b: VersionRefInput!) { diff(from: $a, to: $b) {
        identical summary changes(first: 50) { totalCount edges { node { section op path
        before after } } } } }"""
    body = await gql(http, query, a={"namespace": names, "name": "d", "number": 1},
                     b={"namespace": names, "name": "d", "number": 2})
    diff = body["data"]["diff"]
    assert diff["identical"] is False
    assert diff["summary"] == {"metadata": {"replace": 1}, "schema": {"add": 1},
                               "records": {"added": 1, "removed": 1, "changed": 1}}
    changes = [(c["node"]["section"], c["node"]["op"], c["node"]["path"])
               for c in diff["changes"]["edges"]]
    assert ("records", "changed", "2") in changes
    assert ("metadata", "replace", "/owner") in changes
    await ingest(http, names, "t", text="a\nb\n")
    await ingest(http, names, "t", text="a\nc\n")
    text = await gql(http, query, a={"namespace": names, "name": "t", "number": 1},
                     b={"namespace": names, "name": "t", "number": 2})
    [change] = text["data"]["diff"]["changes"]["edges"]
    assert "-b\n+c\n" in change["node"]["after"]


@pytest.mark.parametrize(("query", "code"), [
    ("query { " + "a: status { headPosition } " * 60 + "}", "LIMIT"),
    ("query { artifacts { edges { node { latest { parents { parents { parents { parents {"
     " parents { parents { parents { parents { parents { parents { parents { parents { name"
     " } } } } } } } } } } } } } } } } }", "LIMIT"),
    ("query { artifacts(first: 5000) { totalCount } }", "LIMIT"),
    ("query { status { headPositio } }", "GRAPHQL_VALIDATION"),
])
async def test_abusive_documents_get_clean_errors(http: httpx.AsyncClient, query: str,
                                                  code: str) -> None:
    body = await gql(http, query)
    assert body["errors"][0]["extensions"]["code"] == code, body


async def test_a_body_over_the_limit_is_413(store: PostgresEventStore,
                                            settings: Settings) -> None:
    async with client_for(store, settings.with_overrides(max_body_bytes=1000)) as http:
        response = await http.post("/graphql", content=b"{" + b" " * 2000 + b"}",
                                   headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "LIMIT"


async def test_introspection_off_hides_the_schema(store: PostgresEventStore,
                                                  settings: Settings) -> None:
    async with client_for(store, settings.with_overrides(graphql_introspection=False)) as http:
        body = await gql(http, "query { __schema { types { name } } }")
        assert body["errors"]
        typo = await gql(http, "query { statu { headPosition } }")
        assert "Did you mean" not in typo["errors"][0]["message"]


async def test_impact_lists_production_versions_downstream_over_three_levels(
    http: httpx.AsyncClient, names: str
) -> None:
    def parent(name: str) -> list[dict[str, Any]]:
        return [{"namespace": names, "name": name}]

    await ingest(http, names, "raw", content=[1])
    await ingest(http, names, "clean", content=[2], parents=parent("raw"))
    await ingest(http, names, "model", content={"m": 1}, parents=parent("clean"))
    await ingest(http, names, "report", content={"r": 1}, parents=parent("clean"))
    last = await ingest(http, names, "dashboard", content={"d": 1}, parents=parent("model"))
    promote = "mutation($r: VersionRefInput!) { promote(ref: $r) { position } }"
    for name in ("model", "dashboard"):
        last = (await gql(http, promote, r={"namespace": names, "name": name}))["data"][
            "promote"]
    await gql(http, "query($ns: String!, $m: Int) { artifact(namespace: $ns, name:"
              " \"dashboard\", minPosition: $m) { name } }", ns=names, m=last["position"])
    await gql(http, "query($ns: String!, $m: Int) { artifact(namespace: $ns, name:"
              " \"model\", minPosition: $m) { name } }", ns=names, m=last["position"])
    impact = await gql(http, """query($ref: VersionRefInput!) { impact(ref: $ref) {
        name number stage } }""", ref={"namespace": names, "name": "raw"})
    assert impact["data"]["impact"] == [
        {"name": "dashboard", "number": 1, "stage": "PRODUCTION"},
        {"name": "model", "number": 1, "stage": "PRODUCTION"}]  # report is only a DRAFT
