"""Webhooks and retention through GraphQL (in-process ASGI, real engines, the projection
worker process keeping the read model): admin scope, secrets shown once, the delivery log,
purged versions in the read model and in diffs, archived artifacts left out of listings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.server import build_services
from core.auth import TokenService
from core.commands import IngestVersion
from core.eventlog_pg import PostgresEventStore
from core.jetstream import connect
from core.retention import Retention
from core.retention_pg import RetentionStore
from core.services import ArtifactService
from core.settings import Settings
from core.webhooks_worker import WebhookDispatcher
from projections.version_history import VersionHistoryProjection
from tests.conftest import new_token
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.anyio

CREATE = """mutation($url: String!, $types: [String!], $ns: [String!]) {
  createWebhook(url: $url, eventTypes: $types, namespaces: $ns) { secret
    webhook { id url eventTypes namespaces checkpoint } } }"""
DELIVERIES = """query($id: String!) { webhookDeliveries(webhookId: $id) { id status
  attemptCount lastError eventType attempts { attempt statusCode error } } }"""
VERSION = """query($ns: String!, $name: String!, $min: Int) {
  artifact(namespace: $ns, name: $name, minPosition: $min) { archived
    versions { edges { node { number purged } } } } }"""
LIST = """query($ns: String!, $all: Boolean!) {
  artifacts(namespace: $ns, includeArchived: $all) { totalCount
    edges { node { name archived } } } }"""
DIFF = """query($ns: String!) { diff(from: {namespace: $ns, name: "m", number: 1},
  to: {namespace: $ns, name: "m", number: 2}) { identical } }"""


@dataclass
class Api:
    execute: Any
    token: Any  # (scopes...) -> Authorization headers of a fresh token
    service: ArtifactService


@pytest.fixture
async def api(store: PostgresEventStore, settings: Settings, workers: None
              ) -> AsyncIterator[Api]:
    assert settings.nats_url
    nc = await connect(settings.nats_url, name="test-ops")
    services = build_services(store.pool, nc.jetstream(), settings,
                              {"version_history": VersionHistoryProjection(store.pool)})
    app = create_app(services, settings, TokenService(store.pool))
    admin = {"Authorization": f"Bearer {await new_token(store, 'admin')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        async def execute(query: str, headers: dict[str, str] | None = None,
                          **variables: Any) -> dict[str, Any]:
            response = await http.post("/graphql", headers=headers or admin,
                                       json={"query": query, "variables": variables})
            assert response.status_code == 200, response.text
            return dict(response.json())

        async def token(*scopes: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {await new_token(store, *scopes)}"}

        yield Api(execute, token, services.artifacts)
    await nc.close()


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def read_model(api: Api, name: str, ns: str, position: int) -> dict[str, Any]:
    """The artifact once the read model has reached ``position``. The projection worker is
    a process of its own that may still be starting (a loaded machine takes longer than one
    bounded wait), so TIMEOUT, which is retryable, is retried for a while."""
    for _ in range(12):
        found = await api.execute(VERSION, ns=ns, name=name, min=position)
        if codes(found) != ["TIMEOUT"]:
            break
    assert "errors" not in found, found
    return dict(found["data"]["artifact"])


async def test_webhook_admin_delivery_log_and_secret_shown_once(
        api: Api, store: PostgresEventStore, names: str) -> None:
    receiver = Receiver()
    created = await api.execute(CREATE, url=receiver.url, types=["VersionIngested"],
                                ns=[names])
    secret = created["data"]["createWebhook"]["secret"]
    webhook = created["data"]["createWebhook"]["webhook"]
    receiver.secret = secret
    listed = await api.execute("query { webhooks { id url eventTypes namespaces } }")
    assert webhook["id"] in [w["id"] for w in listed["data"]["webhooks"]]
    assert secret not in json.dumps(listed)  # never again after creation

    await api.service.ingest(IngestVersion(names, "m", content={"a": 1}))
    dispatcher = WebhookDispatcher(store.pool, store, backoff_base_seconds=0)
    ours = [w for w in await dispatcher.store.signing() if str(w.id) == webhook["id"]]
    async with httpx.AsyncClient(timeout=2) as http:
        await dispatcher.enqueue(ours[0])
        assert await dispatcher.send_due(ours[0], http) == 0  # receiver down
        receiver.start()
        try:
            assert await dispatcher.send_due(ours[0], http) == 1
        finally:
            receiver.stop()
    log = (await api.execute(DELIVERIES, id=webhook["id"]))["data"]["webhookDeliveries"]
    assert [(d["status"], d["attemptCount"], d["eventType"]) for d in log] == [
        ("DELIVERED", 2, "VersionIngested")]
    attempts = log[0]["attempts"]
    assert [a["statusCode"] for a in attempts] == [None, 204]
    assert "ConnectError" in attempts[0]["error"]
    assert [r.delivery for r in receiver.received] == [log[0]["id"]]
    assert receiver.received[0].verified

    reader = await api.token("read", "write", "promote")
    refused = await api.execute(CREATE, headers=reader, url=receiver.url)
    assert codes(refused) == ["FORBIDDEN"]
    assert codes(await api.execute(DELIVERIES, headers=reader, id=webhook["id"])) == [
        "FORBIDDEN"]


@pytest.mark.parametrize(("variables", "code"), [
    ({"url": "ftp://x/h"}, "VALIDATION"),
    ({"url": "not a url"}, "VALIDATION"),
    ({"url": "http://x/h", "types": ["Promoted"]}, "VALIDATION"),
    ({"url": "http://x/h", "ns": ["a/b"]}, "VALIDATION"),
])
async def test_bad_webhooks_get_codes_and_nothing_is_written(
        api: Api, variables: dict[str, Any], code: str) -> None:
    before = (await api.execute("query { webhooks { id } }"))["data"]["webhooks"]
    assert codes(await api.execute(CREATE, **variables)) == [code]
    after = (await api.execute("query { webhooks { id } }"))["data"]["webhooks"]
    assert after == before
    assert codes(await api.execute(DELIVERIES, id="nope")) == ["VALIDATION"]
    assert codes(await api.execute(
        'query { webhookDeliveries(webhookId: "00000000-0000-0000-0000-000000000000") '
        "{ id } }")) == ["NOT_FOUND"]


async def test_purged_versions_in_the_read_model_and_diffs(
        api: Api, store: PostgresEventStore, names: str) -> None:
    for i in (1, 2):
        await api.service.ingest(IngestVersion(names, "m", content={"i": i}))
    bad = await api.execute("mutation($ns: String!) { setRetentionPolicy(namespace: $ns, "
                            "draftDays: -3) { draftDays } }", ns=names)
    assert codes(bad) == ["VALIDATION"]
    assert (await api.execute("query($ns: String!) { retentionPolicies(namespace: $ns) "
                              "{ draftDays } }", ns=names))["data"]["retentionPolicies"] == []
    ok = await api.execute("mutation($ns: String!) { setRetentionPolicy(namespace: $ns, "
                           "draftDays: 7) { namespace draftDays } }", ns=names)
    assert ok["data"]["setRetentionPolicy"] == {"namespace": names, "draftDays": 7}
    dry = await api.execute("mutation($ns: String!) { applyRetention(dryRun: true, "
                            "namespace: $ns) { purged { number } } }", ns=names)
    assert dry["data"]["applyRetention"]["purged"] == []  # nothing is 7 days old yet
    # Time moves through ``now``, never by sleeping.
    retention = Retention(api.service, RetentionStore(store.pool), store.contents)
    report = await retention.apply(now=datetime.now(UTC) + timedelta(days=8), namespace=names)
    assert [p.key.number for p in report.purged] == [1, 2]
    position = (await store.load_stream(names, "m"))[-1].position
    edges = (await read_model(api, "m", names, position))["versions"]["edges"]
    assert [e["node"] for e in edges] == [{"number": 1, "purged": True},
                                          {"number": 2, "purged": True}]
    diff = await api.execute(DIFF, ns=names)
    assert codes(diff) == ["CONTENT_PURGED"]
    assert "purged" in diff["errors"][0]["message"]
    content = await api.execute('query($ns: String!) { artifact(namespace: $ns, name: "m") '
                                "{ version(number: 1) { purged content } } }", ns=names)
    assert codes(content) == ["CONTENT_PURGED"]
    past = await api.execute('query($ns: String!, $at: Int) { artifact(namespace: $ns, '
                             'name: "m", atPosition: $at) { version(number: 1) { purged } } }',
                             ns=names, at=position - 2)  # before the purges: not purged
    assert past["data"]["artifact"]["version"]["purged"] is False


async def test_archive_hides_from_listings_and_keeps_history(
        api: Api, store: PostgresEventStore, names: str) -> None:
    for name in ("kept", "old"):
        await api.service.ingest(IngestVersion(names, name, content={"n": name}))
    archived = await api.execute('mutation($ns: String!) { archiveArtifact(namespace: $ns, '
                                 'name: "old", reason: "stale") }', ns=names)
    position = archived["data"]["archiveArtifact"]
    found = await read_model(api, "old", names, position)
    assert found["archived"] is True
    assert len(found["versions"]["edges"]) == 1  # history kept
    listed = await api.execute(LIST, ns=names, all=False)
    assert listed["data"]["artifacts"]["totalCount"] == 1
    assert [e["node"]["name"] for e in listed["data"]["artifacts"]["edges"]] == ["kept"]
    everything = await api.execute(LIST, ns=names, all=True)
    assert [(e["node"]["name"], e["node"]["archived"])
            for e in everything["data"]["artifacts"]["edges"]] == [("kept", False),
                                                                   ("old", True)]
    back = await api.execute('mutation($ns: String!) { unarchiveArtifact(namespace: $ns, '
                             'name: "old") }', ns=names)
    await read_model(api, "old", names, back["data"]["unarchiveArtifact"])
    assert (await api.execute(LIST, ns=names, all=False))["data"]["artifacts"][
        "totalCount"] == 2
    missing = await api.execute('mutation($ns: String!) { archiveArtifact(namespace: $ns, '
                                'name: "nope") }', ns=names)
    assert codes(missing) == ["NOT_FOUND"]
    other = await api.token("promote")
    assert codes(await api.execute(
        "mutation { applyRetention(dryRun: true) { dryRun } }", headers=other)) == [
        "FORBIDDEN"]
