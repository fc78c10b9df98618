"""GraphQL over HTTP (in-process ASGI) against the real engines: writes go to the event log,
reads come from the version-history read model the projection worker process keeps."""

from __future__ import annotations

import base64
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

INGEST = """mutation($input: IngestInput!) { ingest(input: $input) {
  created position version { number label stage digest size mediaType metadata content text
  producer position parents { namespace name number } } } }"""
ARTIFACT = """query($ns: String!, $name: String!, $at: Int, $min: Int) {
  artifact(namespace: $ns, name: $name, atPosition: $at, minPosition: $min) {
    namespace name kind latest { number } production { number label }
    version(number: 1) { stage children { name number } }
    versions(first: 2) { totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { number stage } } }
    promotions { version { number } previous { number } reason at position } } }"""


@pytest.fixture
async def gql(store: PostgresEventStore, settings: Settings, workers: None
              ) -> AsyncIterator[Any]:
    assert settings.nats_url
    nc = await connect(settings.nats_url, name="test")
    limited = settings.with_overrides(max_content_bytes=1024)
    services = build_services(store.pool, nc.jetstream(), limited,
                              {"version_history": VersionHistoryProjection(store.pool)})
    app = create_app(services, limited, TokenService(store.pool))
    headers = {"Authorization": f"Bearer {await new_token(store, 'admin')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test", headers=headers) as http:
        async def execute(query: str, **variables: Any) -> dict[str, Any]:
            response = await http.post("/graphql", json={"query": query, "variables": variables})
            assert response.status_code == 200, response.text
            return dict(response.json())
        yield execute
    await nc.close()


def ingest_input(ns: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"namespace": ns, "name": name, **fields}


async def test_ingest_json_text_and_bytes(gql: Any, names: str) -> None:
    body = await gql(INGEST, input=ingest_input(names, "ds", kind="dataset",
                                                content=[{"id": 1}], metadata={"team": "x"}))
    version = body["data"]["ingest"]["version"]
    assert body["data"]["ingest"]["created"] is True
    assert (version["number"], version["label"], version["stage"]) == (1, "v1", "DRAFT")
    assert version["content"] == [{"id": 1}]
    assert version["mediaType"] == "application/json"
    assert version["metadata"] == {"team": "x"}
    text = await gql(INGEST, input=ingest_input(names, "notes", text="hello"))
    assert text["data"]["ingest"]["version"]["text"] == "hello"
    raw = await gql(INGEST, input=ingest_input(
        names, "blob", contentBase64=base64.b64encode(b"\x00\x01").decode(),
        parents=[{"namespace": names, "name": "ds", "number": 1}]))
    blob = raw["data"]["ingest"]["version"]
    assert (blob["size"], blob["content"], blob["text"]) == (2, None, None)
    assert blob["parents"] == [{"namespace": names, "name": "ds", "number": 1}]


async def test_artifact_history_promotions_and_time_travel(gql: Any, names: str) -> None:
    for i in range(3):
        await gql(INGEST, input=ingest_input(names, "m", content={"i": i}))
    promote = """mutation($ref: VersionRefInput!) { promote(ref: $ref, reason: "good") {
        position version { number stage } previous { number } } }"""
    first = await gql(promote, ref={"namespace": names, "name": "m", "number": 1})
    second = await gql(promote, ref={"namespace": names, "name": "m", "label": "v3"})
    assert second["data"]["promote"]["previous"] == {"number": 1}
    assert second["data"]["promote"]["version"] == {"number": 3, "stage": "PRODUCTION"}
    artifact = (await gql(ARTIFACT, ns=names, name="m",
                          min=second["data"]["promote"]["position"]))["data"]["artifact"]
    assert artifact["latest"] == {"number": 3}
    assert artifact["production"] == {"number": 3, "label": "v3"}
    assert artifact["version"]["stage"] == "SUPERSEDED"
    assert artifact["versions"]["totalCount"] == 3
    assert [e["node"]["number"] for e in artifact["versions"]["edges"]] == [1, 2]
    assert artifact["versions"]["pageInfo"]["hasNextPage"] is True
    assert [(p["version"]["number"], p["previous"]) for p in artifact["promotions"]] == [
        (1, None), (3, {"number": 1})]
    then = (await gql(ARTIFACT, ns=names, name="m",
                      at=first["data"]["promote"]["position"]))["data"]["artifact"]
    assert then["production"] == {"number": 1, "label": "v1"}
    assert len(then["promotions"]) == 1
    at_time = """query($ns: String!, $t: DateTime) { artifact(namespace: $ns, name: "m",
        asOf: $t) { production { number } promotions { version { number } } } }"""
    moment = artifact["promotions"][0]["at"]  # the first promotion's time
    before = (await gql(at_time, ns=names, t="2000-01-01T00:00:00Z"))["data"]["artifact"]
    assert before is None  # nothing existed yet
    after_first = (await gql(at_time, ns=names, t=moment))["data"]["artifact"]
    assert after_first["production"] == {"number": 1}
    assert [p["version"]["number"] for p in after_first["promotions"]] == [1]
    naive = await gql(at_time, ns=names, t="2030-01-01T00:00:00")
    assert naive["errors"][0]["extensions"]["code"] == "VALIDATION"  # a time needs a zone


async def test_missing_artifact_is_null(gql: Any, names: str) -> None:
    assert (await gql(ARTIFACT, ns=names, name="nothing"))["data"]["artifact"] is None


@pytest.mark.parametrize(("fields", "code"), [
    ({"name": "bad name", "content": 1}, "VALIDATION"),
    ({"content": 1, "text": "x"}, "VALIDATION"),
    ({"text": "x" * 2000}, "LIMIT"),
    ({"content": 1, "expectedVersion": 3}, "CONFLICT"),
    ({"content": 1, "parents": [{"namespace": "nowhere", "name": "x"}]}, "NOT_FOUND"),
    ({"content": 1, "metadata": "not an object"}, "VALIDATION"),
])
async def test_bad_input_gets_an_error_code(gql: Any, names: str, fields: dict[str, Any],
                                            code: str) -> None:
    body = await gql(INGEST, input={"namespace": names, "name": "x", **fields})
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == code
    assert body["errors"][0]["message"]
    assert (await gql(ARTIFACT, ns=names, name="x"))["data"]["artifact"] is None


async def test_stage_rule_errors_have_codes(gql: Any, names: str) -> None:
    await gql(INGEST, input=ingest_input(names, "s", content=1))
    ref = {"namespace": names, "name": "s", "number": 1}
    await gql("mutation($r: VersionRefInput!) { promote(ref: $r) { position } }", r=ref)
    body = await gql("mutation($r: VersionRefInput!) { withdraw(ref: $r) { position } }", r=ref)
    assert body["errors"][0]["extensions"]["code"] == "STAGE_RULE"
    missing = await gql("mutation($r: VersionRefInput!) { promote(ref: $r) { position } }",
                        r={**ref, "number": 9})
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_malformed_graphql_is_a_client_error(gql: Any) -> None:
    body = await gql("query { artifact(namespace: 1) { nme } }")
    assert body["errors"]
    assert all(e["extensions"]["code"] == "GRAPHQL_VALIDATION" for e in body["errors"])
