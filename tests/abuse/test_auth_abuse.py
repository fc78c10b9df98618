"""Auth abuse: missing, malformed and revoked tokens get 401 everywhere; a token limited to one
namespace probing another through every operation gets 403 / GraphQL FORBIDDEN, and no answer
it gets carries anything of the other namespace."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from core.auth import TokenService
from core.eventlog_pg import PostgresEventStore
from core.settings import Settings
from tests.abuse.conftest import app_client, error_code

pytestmark = pytest.mark.anyio

GQL = "query { __typename }"
BAD_TOKENS: dict[str, dict[str, str]] = {
    "missing": {},
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    "malformed": {"Authorization": "Bearer al_short"},
    "not ours": {"Authorization": "Bearer al_" + "A" * 43},
    "header injection": {"Authorization": "Bearer al_x\tadmin"},
    "cookie garbage": {"Cookie": "artifactlog_token=%00%ff"},
}


def requests() -> list[tuple[str, str, dict[str, Any]]]:
    ndjson = {"content": b'{"namespace": "n", "name": "x", "content": 1}',
              "headers": {"content-type": "application/x-ndjson"}}
    return [("POST", "/graphql", {"json": {"query": GQL}}),
            ("GET", f"/graphql?query={GQL}", {}),
            ("POST", "/sql", {"content": b"SELECT 1"}),
            ("POST", "/ingest/bulk", ndjson)]


async def test_missing_malformed_and_revoked_tokens_get_401(
    store: PostgresEventStore, settings: Settings, figures: dict[str, Any],
) -> None:
    tokens = TokenService(store.pool)
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    revoked, _ = await tokens.create(name, ["admin"])
    await tokens.revoke(name)
    cases = {**BAD_TOKENS, "revoked": {"Authorization": f"Bearer {revoked}"}}
    tried = 0
    async with app_client(store, settings) as http:
        for case, headers in cases.items():
            for method, path, kwargs in requests():
                http.headers.pop("Authorization", None)
                sent = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
                response = await http.request(method, path, **sent)
                tried += 1
                assert response.status_code == 401, (case, path, response.text)
                assert error_code(response) == "UNAUTHENTICATED", (case, path)
    figures.update(requests=tried, all_401=True)


OWN_QUERIES = [
    ('query($ns: String!) { artifact(namespace: $ns, name: "secret") { name } }', "FORBIDDEN"),
    ('query($ns: String!) { artifacts(namespace: $ns) { totalCount } }', "FORBIDDEN"),
    ('query($ns: String!) { replay(namespace: $ns, name: "secret") { state } }', "FORBIDDEN"),
    ('query($ns: String!) { lineage(ref: {namespace: $ns, name: "secret"}, direction: DOWNSTREAM)'
     " { nodes { name } } }", "FORBIDDEN"),
    ('query($ns: String!, $own: String!) { diff(from: {namespace: $own, name: "child"},'
     ' to: {namespace: $ns, name: "secret"}) { identical } }', "FORBIDDEN"),
    ("query { analytics(sql: \"SELECT * FROM events\") { rows } }", "FORBIDDEN"),
    ('mutation($ns: String!) { ingest(input: {namespace: $ns, name: "x", content: 1})'
     " { created } }", "FORBIDDEN"),
    ('mutation($ns: String!, $own: String!) { ingest(input: {namespace: $own, name: "y",'
     ' content: 1, parents: [{namespace: $ns, name: "secret"}]}) { created } }', "FORBIDDEN"),
    ('mutation($ns: String!, $own: String!) { ingestBatch(inputs: [{namespace: $own, name: "z",'
     ' content: 1}, {namespace: $ns, name: "z", content: 1}]) { index } }', "FORBIDDEN"),
    ('mutation($ns: String!) { promote(ref: {namespace: $ns, name: "secret", number: 1})'
     " { position } }", "FORBIDDEN"),
    ('mutation($ns: String!) { withdraw(ref: {namespace: $ns, name: "secret", number: 1})'
     " { position } }", "FORBIDDEN"),
    ('mutation { rebuildProjection(name: "version_history") { events } }', "FORBIDDEN"),
]
LISTS = [
    "query { artifacts(first: 100) { totalCount edges { node { namespace name } } } }",
    "query { events(first: 500) { totalCount edges { node { namespace name } } } }",
    'query($own: String!, $p: Int) { artifact(namespace: $own, name: "child", minPosition: $p)'
    " { latest { parents { namespace name } } } }",
    'query($own: String!) { lineage(ref: {namespace: $own, name: "child"}, direction: UPSTREAM)'
    " { nodes { namespace name } edges { from { name } } } }",
    'query($own: String!) { replay(namespace: $own, name: "child") { state } }',
    "query { status { headPosition projections { name } } }",
]


async def test_a_namespace_token_gets_nothing_of_another_namespace(
    store: PostgresEventStore, settings: Settings, workers: None, figures: dict[str, Any],
) -> None:
    own, other = f"own{uuid.uuid4().hex[:8]}", f"sec{uuid.uuid4().hex[:8]}"
    marker = f"TOPSECRET{uuid.uuid4().hex}"
    async with app_client(store, settings) as admin:
        for name in ("secret", f"hidden{marker}"):
            await _ingest(admin, other, name, content={"s": marker}, metadata={"m": marker})
        last = await _ingest(admin, own, "child", content=1,
                             parents=[{"namespace": other, "name": "secret"}])
    answers: list[str] = []
    limited = ["read", "write", "promote"]
    async with app_client(store, settings, *limited, namespaces=[own]) as http:
        for query, code in OWN_QUERIES:
            response = await http.post("/graphql", json={"query": query, "variables": {
                "ns": other, "own": own}})
            answers.append(response.text)
            assert response.status_code == 200, response.text
            assert error_code(response) == code, (query, response.text)
            data = response.json().get("data") or {}
            assert all(value is None for value in data.values()), response.text
        for query in LISTS:
            response = await http.post("/graphql", json={"query": query, "variables": {
                "own": own, "p": last}})
            answers.append(response.text)
            assert response.status_code == 200, response.text
            assert "errors" not in response.json(), response.text
        sql = await http.post("/sql", content=b"SELECT * FROM events")
        bulk = await http.post("/ingest/bulk", content="\n".join(json.dumps(line) for line in (
            {"namespace": own, "name": "bulk", "content": 1},
            {"namespace": other, "name": "bulk", "content": 1})),
            headers={"content-type": "application/x-ndjson"})
        answers += [sql.text, bulk.text]
    assert sql.status_code == 403
    assert [r.get("error", {}).get("code") for r in bulk.json()["results"]] == [None, "FORBIDDEN"]
    leaked = [a[:300] for a in answers if marker in a or f'"{other}"' in a.replace(
        f"namespace '{other}'", "")]
    figures.update(operations=len(OWN_QUERIES) + len(LISTS) + 2, leaked=len(leaked))
    assert leaked == []
    async with app_client(store, settings) as admin:  # the refused writes wrote nothing
        body = (await admin.post("/graphql", json={"query": 'query($ns: String!) { artifacts('
                                 "namespace: $ns) { edges { node { name } } } }",
                                 "variables": {"ns": other}})).json()
        names = sorted(e["node"]["name"] for e in body["data"]["artifacts"]["edges"])
        assert names == sorted(["secret", f"hidden{marker}"])


async def _ingest(http: httpx.AsyncClient, namespace: str, name: str, **fields: Any) -> int:
    response = await http.post("/graphql", json={
        "query": "mutation($i: IngestInput!) { ingest(input: $i) { position } }",
        "variables": {"i": {"namespace": namespace, "name": name, **fields}}})
    body = response.json()
    assert "errors" not in body, body
    return int(body["data"]["ingest"]["position"])


async def test_event_payloads_do_not_name_other_namespaces(
    store: PostgresEventStore, settings: Settings,
) -> None:
    own, other = f"own{uuid.uuid4().hex[:8]}", f"sec{uuid.uuid4().hex[:8]}"
    async with app_client(store, settings) as admin:
        await _ingest(admin, other, "secret", content=1)
        last = await _ingest(admin, own, "child", content=1,
                             parents=[{"namespace": other, "name": "secret"}])
    async with app_client(store, settings, "read", namespaces=[own]) as http:
        response = await http.post("/graphql", json={
            "query": "query($p: Int) { events(afterPosition: $p) { edges { node { namespace"
                     " payload } } } }", "variables": {"p": last - 1}})
    nodes = [e["node"] for e in response.json()["data"]["events"]["edges"]]
    assert [n["namespace"] for n in nodes] == [own]
    assert other not in response.text
