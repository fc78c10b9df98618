"""Every way in (ingest, ingest_many atomic and bulk, HTTP bulk, NATS) against the real engines:
batches mean what sequential ingests mean, atomic batches write all or nothing, bulk lines
fail alone, and a bad input gets the same code and message on every path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from starlette.applications import Starlette
from starlette.routing import Route

from api.bulk import BulkLimits, bulk_ingest_endpoint
from core.commands import IngestVersion, VersionRef
from core.errors import ArtifactlogError, Conflict, LimitExceeded, NotFound, ValidationError
from core.eventlog_pg import PostgresEventStore
from core.ingest_nats import NatsIngestWorker
from core.jetstream import connect
from core.services import ArtifactService
from core.settings import Settings
from tests.conftest import Engines
from tests.integration.test_event_log import bad_ingests, count_rows
from tests.integration.test_graphql_log import client_for

pytestmark = pytest.mark.anyio


def wire(cmd: IngestVersion) -> dict[str, Any]:
    """The IngestInput JSON object for a command (as a producer would send it)."""
    fields = {
        "namespace": cmd.namespace, "name": cmd.name, "kind": cmd.kind, "content": cmd.content,
        "text": cmd.text, "contentBase64": cmd.content_base64, "mediaType": cmd.media_type,
        "metadata": cmd.metadata, "producer": cmd.producer,
        "idempotencyKey": cmd.idempotency_key, "expectedVersion": cmd.expected_version,
        "force": cmd.force or None, "parents": [asdict(p) for p in cmd.parents] or None}
    return {k: v for k, v in fields.items() if v is not None}


def ndjson(*objects: Any) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objects).encode()


def bulk_client(service: ArtifactService, **limits: Any) -> httpx.AsyncClient:
    endpoint = bulk_ingest_endpoint(lambda _: service, lambda _: "http-test", BulkLimits(**limits))
    app = Starlette(routes=[Route("/ingest/bulk", endpoint, methods=["POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bulk")


async def post_bulk(client: httpx.AsyncClient, body: Any,
                    content_type: str = "application/x-ndjson") -> httpx.Response:
    return await client.post("/ingest/bulk", content=body, headers={"content-type": content_type})


async def transactions(store: PostgresEventStore, namespace: str) -> int:
    """How many transactions wrote the namespace's events (xmin is the writing transaction)."""
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(DISTINCT xmin::text) FROM events"
                                 " WHERE namespace = %s", (namespace,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def small_service(store: PostgresEventStore) -> ArtifactService:
    """The limits bad_ingests() is written for."""
    return ArtifactService(store, max_content_bytes=2048)


@pytest.fixture
async def nc(engines: Engines) -> AsyncIterator[NatsClient]:
    client = await connect(engines.nats.url, name="test-ingest")
    yield client
    await client.close()


@asynccontextmanager
async def serving(*workers: NatsIngestWorker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    await asyncio.wait_for(asyncio.gather(*[w.ready.wait() for w in workers]), 10)
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def request(nc: NatsClient, subject: str, payload: Any, **headers: str) -> Any:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reply = await nc.request(subject, data, timeout=10, headers=headers or None)
    return json.loads(reply.data)


def lineage_batch(ns: str, *, model_parent: str = "dataset") -> list[IngestVersion]:
    """A dataset, its schema and the model trained on both, parents inside the batch."""
    return [
        IngestVersion(ns, "dataset", kind="dataset", content=[{"x": 1}, {"x": 2}]),
        IngestVersion(ns, "schema", kind="schema", content={"x": "int"},
                      parents=(VersionRef(ns, "dataset"),)),
        IngestVersion(ns, "model", kind="model", content={"w": [0.5]},
                      parents=(VersionRef(ns, model_parent, 1), VersionRef(ns, "schema"))),
    ]


async def test_atomic_batch_across_artifacts_with_parents_in_the_batch(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    dataset, schema, model = [o.unwrap() for o in await service.ingest_many(
        lineage_batch(names), atomic=True)]
    assert [r.created for r in (dataset, schema, model)] == [True, True, True]
    assert schema.version.parents == (dataset.version.key,)
    assert model.version.parents == (dataset.version.key, schema.version.key)
    assert dataset.position < schema.position < model.position
    assert model.version.position == model.position  # real positions, not placeholders
    children = await service.children(dataset.version.key)
    assert [c.key for c in children] == [schema.version.key, model.version.key]
    assert await transactions(store, names) == 1


@pytest.mark.parametrize(("bad", "error", "index"), [
    ("ghost", NotFound, 2),  # a parent that is neither stored nor earlier in the batch
    ("model", NotFound, 2),  # a parent that only the same command would create
])
async def test_atomic_batch_with_one_bad_member_writes_nothing(
    service: ArtifactService, store: PostgresEventStore, names: str, bad: str,
    error: type[ArtifactlogError], index: int,
) -> None:
    before = await count_rows(store)
    with pytest.raises(error) as raised:
        await service.ingest_many(lineage_batch(names, model_parent=bad), atomic=True)
    assert raised.value.details["index"] == index
    invalid = [*lineage_batch(names)[:2], IngestVersion(names, "bad name", content=1)]
    with pytest.raises(ValidationError):
        await service.ingest_many(invalid, atomic=True)
    with pytest.raises(LimitExceeded, match="at most 1000 commands, got 1001"):
        await service.ingest_many(lineage_batch(names)[:1] * 1001, atomic=True)
    assert await count_rows(store) == before
    assert not (await service.load(names, "dataset")).exists


async def test_versions_of_one_artifact_in_an_atomic_batch_are_consecutive(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    await service.ingest(IngestVersion(names, "cfg", text="a=0"))
    results = [o.unwrap() for o in await service.ingest_many([
        IngestVersion(names, "cfg", text="a=1", expected_version=1),
        IngestVersion(names, "cfg", text="a=2", expected_version=2),
        IngestVersion(names, "cfg", text="a=2"),  # identical to the batch's own v3
        IngestVersion(names, "cfg", text="a=3", parents=(VersionRef(names, "cfg", label="v2"),)),
    ], atomic=True)]
    assert [(r.version.number, r.created) for r in results] == [
        (2, True), (3, True), (3, False), (4, True)]
    assert results[2].position == results[1].position
    assert results[3].version.parents == (results[0].version.key,)
    events = await store.load_stream(names, "cfg")
    assert [e.stream_version for e in events] == [1, 2, 3, 4]
    assert len({e.metadata["correlationId"] for e in events[1:]}) == 1  # ingested together


async def test_bulk_rejects_only_bad_lines_and_keeps_line_order(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    commands = [IngestVersion(names if i % 7 else "bad ns", f"s{i % 3}", content=i,
                              metadata={"line": i}) for i in range(250)]
    outcomes = await service.ingest_many(commands, atomic=False)
    assert [o.index for o in outcomes] == list(range(250))
    assert [i for i, o in enumerate(outcomes) if o.error] == list(range(0, 250, 7))
    assert {type(o.error) for o in outcomes if o.error} == {ValidationError}
    for artifact in ("s0", "s1", "s2"):
        state = await service.load(names, artifact)
        expected = [i for i in range(250) if i % 3 == int(artifact[1]) and i % 7]
        assert [v.metadata["line"] for v in state.versions] == expected
        assert [v.number for v in state.versions] == list(range(1, len(expected) + 1))
    assert await transactions(store, names) == 3  # one per group of 100 lines, not per line


async def test_duplicate_idempotency_key_inside_a_batch(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    key = f"{names}-k"
    batch = [IngestVersion(names, "doc", text="one", idempotency_key=key),
             IngestVersion(names, "doc", text="one", idempotency_key=key),
             IngestVersion(names, "doc", text="two", idempotency_key=key),
             IngestVersion(names, "doc", text="two", idempotency_key=f"{names}-k2")]
    first, again, reused, other = await service.ingest_many(batch, atomic=False)
    assert first.unwrap().created
    assert not again.unwrap().created
    assert again.unwrap().version == first.unwrap().version
    assert isinstance(reused.error, Conflict)
    assert "already used for a different request" in reused.error.message
    assert other.unwrap().version.number == 2
    retried = await service.ingest_many(batch, atomic=False)  # a retried request
    assert [o.result.version.number for o in retried if o.result] == [1, 1, 2]
    assert not any(o.result.created for o in retried if o.result)
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM idempotency_keys WHERE key LIKE %s",
                                 (f"{names}-%",))
        assert await cur.fetchone() == (2,)
    atomic = await service.ingest_many(batch[:2], atomic=True)
    assert [o.unwrap().created for o in atomic] == [False, False]


async def test_concurrent_batches_retry_and_stay_contiguous(
    service: ArtifactService, names: str
) -> None:
    async def atomic(worker: int) -> list[int]:
        batch = [IngestVersion(names, "hot", content=[worker, i]) for i in range(5)]
        return [o.unwrap().version.number for o in await service.ingest_many(batch, atomic=True)]

    async def bulk(worker: int) -> list[int]:
        batch = [IngestVersion(names, "hot", content=[-worker, i]) for i in range(30)]
        return [o.unwrap().version.number for o in await service.ingest_many(batch, atomic=False)]

    numbers = await asyncio.gather(*[atomic(w) for w in range(6)], *[bulk(w) for w in range(3)])
    for batch_numbers in numbers[:6]:  # an atomic batch's versions are one contiguous run
        assert batch_numbers == list(range(batch_numbers[0], batch_numbers[0] + 5))
    state = await service.load(names, "hot")
    assert [v.number for v in state.versions] == list(range(1, 6 * 5 + 3 * 30 + 1))


async def test_a_bad_input_gets_the_same_error_on_every_path(
    small_service: ArtifactService, store: PostgresEventStore, nc: NatsClient, names: str,
    settings: Settings,
) -> None:
    cases = bad_ingests(names)
    before = await count_rows(store)
    expected = []
    for cmd, error in cases:
        with pytest.raises(error) as raised:
            await small_service.ingest(cmd)
        expected.append({"code": raised.value.code, "message": raised.value.message})
    paths: dict[str, list[Any]] = {"bulk": [], "atomic": []}
    for cmd, _ in cases:
        (outcome,) = await small_service.ingest_many([cmd], atomic=False)
        assert outcome.error is not None
        paths["bulk"].append({"code": outcome.error.code, "message": outcome.error.message})
        with pytest.raises(ArtifactlogError) as raised:
            await small_service.ingest_many([cmd], atomic=True)
        paths["atomic"].append({"code": raised.value.code, "message": raised.value.message})
    async with bulk_client(small_service) as client:
        response = await post_bulk(client, ndjson(*[wire(c) for c, _ in cases]))
    assert response.status_code == 200
    paths["http"] = [r["error"] for r in response.json()["results"]]
    subject = f"test.ingest.{names}"
    async with serving(NatsIngestWorker(nc, small_service, subject=subject)):
        paths["nats"] = [(await request(nc, subject, wire(c)))["error"] for c, _ in cases]
        paths["nats-array"] = [r["error"] for r in await request(
            nc, subject, [wire(c) for c, _ in cases])]
    async with client_for(store, settings.with_overrides(max_content_bytes=2048)) as http:
        paths["graphql"] = []
        for cmd, _ in cases:
            # json.dumps writes Infinity for the inf case, as a careless client would
            raw = json.dumps({"query": GRAPHQL_INGEST, "variables": {"input": wire(cmd)}})
            body = (await http.post("/graphql", content=raw.encode(),
                                    headers={"content-type": "application/json"})).json()
            error = body["errors"][0]
            paths["graphql"].append({"code": error["extensions"]["code"],
                                     "message": error["message"]})
    for path, errors in paths.items():
        assert errors == expected, path
    assert await count_rows(store) == before


GRAPHQL_INGEST = "mutation($input: IngestInput!) { ingest(input: $input) { position } }"


async def test_bulk_http_results_and_status_codes(
    service: ArtifactService, store: PostgresEventStore, names: str
) -> None:
    body = ndjson(wire(IngestVersion(names, "a", content=1)), {"namespace": names}) + (
        b"not json\n\n[1, 2]\n" + ndjson(wire(IngestVersion(names, "a", content=1))))

    async def chunks() -> AsyncIterator[bytes]:  # lines cut across chunk boundaries
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    async with bulk_client(service, group_lines=2) as client:
        answer = (await post_bulk(client, chunks())).json()
        assert (answer["created"], answer["unchanged"], answer["failed"]) == (1, 1, 3)
        first, missing, not_json, not_object, again = answer["results"]
        assert first == {"line": 1, "created": True, "namespace": names, "name": "a",
                         "number": 1, "label": "v1", "digest": first["digest"],
                         "position": first["position"]}
        assert missing == {"line": 2, "error": {
            "code": "VALIDATION", "message": "name is required and must be a string"}}
        assert not_json["line"] == 3
        assert not_json["error"]["message"].startswith("not valid JSON")
        assert not_object["line"] == 5  # line 4 is blank
        assert (again["line"], again["created"], again["number"]) == (6, False, 1)
        assert (await post_bulk(client, body, "text/plain")).status_code == 415
        assert (await post_bulk(client, b"")).status_code == 400
        assert (await post_bulk(client, b"\n \n")).status_code == 400
    async with bulk_client(service, max_line_bytes=200, max_lines=3) as client:
        long_line = wire(IngestVersion(names, "b", text="x" * 300))
        lines = [wire(IngestVersion(names, "b", text=str(i))) for i in range(2)]
        refused = await post_bulk(client, ndjson(*lines, long_line, lines[0]))
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "LIMIT"
        assert "line 3 is longer than 200 bytes" in refused.json()["error"]["message"]
        assert [r["line"] for r in refused.json()["results"]] == [1, 2]  # stored before it
        four = [wire(IngestVersion(names, "c", text=str(i))) for i in range(4)]
        too_many = await post_bulk(client, ndjson(*four))
        assert too_many.status_code == 413
        assert "more than 3 lines" in too_many.json()["error"]["message"]
        assert [r["line"] for r in too_many.json()["results"]] == [1, 2, 3]
    assert [v.number for v in (await service.load(names, "b")).versions] == [1, 2]
    assert [v.number for v in (await service.load(names, "c")).versions] == [1, 2, 3]


async def test_nats_worker_replies_to_good_bad_and_malformed_messages(
    service: ArtifactService, store: PostgresEventStore, nc: NatsClient, names: str
) -> None:
    subject = f"test.ingest.{names}"
    good = wire(IngestVersion(names, "n", content={"a": 1}))
    async with serving(NatsIngestWorker(nc, service, subject=subject)):
        created = await request(nc, subject, good, **{"Artifactlog-Producer": "etl-7"})
        assert (created["created"], created["version"]["number"]) == (True, 1)
        assert created["position"] == created["version"]["position"]
        assert (await request(nc, subject, good))["created"] is False
        assert (await request(nc, subject, {**good, "name": "a b"}))["error"]["code"] == (
            "VALIDATION")
        malformed = await request(nc, subject, b'{"namespace": ')
        assert malformed["error"]["message"].startswith("not valid JSON")
        assert (await request(nc, subject, b"  "))["error"]["code"] == "VALIDATION"
        assert (await request(nc, subject, b"42"))["error"]["code"] == "VALIDATION"
        typo = await request(nc, subject, {**good, "idempotency_key": "k"})
        assert typo["error"]["message"] == "unknown IngestInput field(s): idempotency_key"
        second = wire(IngestVersion(names, "n", content={"a": 2}))
        answers = await request(nc, subject, ndjson(second, "x") + b"{oops\n")
        assert [a.get("created") for a in answers] == [True, None, None]
        assert [a.get("error", {}).get("code") for a in answers] == [None, "VALIDATION",
                                                                      "VALIDATION"]
    events = await store.load_stream(names, "n")
    assert [e.metadata["actor"] for e in events] == ["etl-7", "nats"]


async def test_two_workers_in_the_queue_group_share_the_requests(
    service: ArtifactService, nc: NatsClient, engines: Engines, names: str
) -> None:
    subject = f"test.ingest.{names}"
    other = await connect(engines.nats.url, name="test-ingest-2")
    workers = [NatsIngestWorker(nc, service, subject=subject),
               NatsIngestWorker(other, service, subject=subject)]
    try:
        async with serving(*workers):
            replies = await asyncio.gather(*[request(nc, subject, wire(
                IngestVersion(names, f"q{i}", content=i))) for i in range(40)])
    finally:
        await other.close()
    assert all(r["created"] for r in replies)
    assert sum(w.handled for w in workers) == 40
    assert all(w.handled > 0 for w in workers)
