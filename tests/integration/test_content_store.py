"""The content-store port against its two adapters: the Postgres content table and an
S3-compatible object store (moto's S3 server, a real HTTP server on 127.0.0.1).

The contract runs against both; then ingest -> read -> diff -> purge through the S3 store,
through the service and through GraphQL."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from api.app import create_app
from api.server import build_services
from core.auth import TokenService
from core.commands import IngestVersion, VersionRef
from core.comparison import DiffService
from core.content import encode_content
from core.content_store import content_store_for
from core.content_store_pg import PostgresContentStore
from core.content_store_s3 import S3ContentStore
from core.errors import NotFound, Unavailable, ValidationError
from core.eventlog_pg import PostgresEventStore
from core.jetstream import connect
from core.ports import ContentStore
from core.runtime import free_port
from core.services import ArtifactService
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.conftest import new_token

pytestmark = pytest.mark.anyio

SECRET = "never-log-this-secret-0123456789"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 for the whole session."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials as a deployment gives them: the standard AWS variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "artifactlog-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def bucket(s3_endpoint: str, aws_environment: None) -> str:
    name = f"al-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str, bucket: str) -> Settings:
    return settings.with_overrides(content_store=f"s3://{bucket}/artifacts",
                                   s3_endpoint=s3_endpoint)


def object_keys(endpoint: str, bucket: str) -> set[str]:
    listed = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return {item["Key"] for item in listed.get("Contents", [])}


@pytest.fixture(params=["postgres", "s3"])
def content_store(request: pytest.FixtureRequest, store: PostgresEventStore) -> ContentStore:
    if request.param == "postgres":
        return PostgresContentStore(store.pool)
    s3_settings: Settings = request.getfixturevalue("s3_settings")
    return content_store_for(s3_settings, store.pool)


def content(value: object) -> Any:
    return encode_content(content=value, max_bytes=1 << 20)


async def test_the_contract_put_get_exists_delete(content_store: ContentStore) -> None:
    marker = uuid.uuid4().hex
    a, b = content({"a": marker}), content({"b": marker})
    await content_store.put_many([a, b, a])
    await content_store.put_many([a])  # already stored: a no-op
    assert await content_store.get(a.digest) == a.data
    assert await content_store.get(b.digest) == b.data
    assert await content_store.exists(a.digest)
    unknown = content({"never": marker}).digest
    assert not await content_store.exists(unknown)
    assert await content_store.get(unknown) is None
    assert await content_store.delete(a.digest)
    assert not await content_store.delete(a.digest)  # already gone
    assert await content_store.get(a.digest) is None
    assert not await content_store.exists(a.digest)
    assert await content_store.get(b.digest) == b.data  # others untouched


async def test_ingest_read_diff_and_purge_through_s3(
    store: PostgresEventStore, s3_settings: Settings, s3_endpoint: str, bucket: str, names: str,
) -> None:
    contents = content_store_for(s3_settings, store.pool)
    assert isinstance(contents, S3ContentStore)
    service = ArtifactService(PostgresEventStore(store.pool, contents),
                              max_content_bytes=s3_settings.max_content_bytes)
    rows = [{"id": i, "amount": i * 10} for i in range(5)]
    first = await service.ingest(IngestVersion(names, "sales", kind="dataset", content=rows,
                                               metadata={"key": "id"}))
    rows[2]["amount"] = 999
    second = await service.ingest(IngestVersion(names, "sales", kind="dataset", content=rows,
                                                metadata={"key": "id"}))
    digests = {first.version.digest, second.version.digest}
    assert object_keys(s3_endpoint, bucket) >= {f"artifacts/{d}" for d in digests}
    async with store.pool.connection() as conn:  # the bytes are not in Postgres
        cur = await conn.execute("SELECT count(*) FROM content WHERE digest = ANY(%s)",
                                 (sorted(digests),))
        assert await cur.fetchone() == (0,)
    assert await service.content_of(first.version) == content(
        [{"id": i, "amount": i * 10} for i in range(5)]).data

    comparison = await DiffService(service).diff(VersionRef(names, "sales", 1),
                                                 VersionRef(names, "sales", 2))
    assert comparison.total > 0
    assert any("999" in repr(change) for change in comparison.changes)

    assert await contents.delete(first.version.digest)  # what a retention purge calls
    assert f"artifacts/{first.version.digest}" not in object_keys(s3_endpoint, bucket)
    with pytest.raises(NotFound, match="not stored"):
        await service.content_of(first.version)
    assert await service.content_of(second.version) == content(rows).data
    assert len(await service.store.load_stream(names, "sales")) == 2  # the log is untouched


async def test_graphql_ingest_and_read_through_s3(
    store: PostgresEventStore, s3_settings: Settings, s3_endpoint: str, bucket: str,
    names: str,
) -> None:
    assert s3_settings.nats_url
    nc = await connect(s3_settings.nats_url, name="test")
    try:
        services = build_services(store.pool, nc.jetstream(), s3_settings,
                                  {"version_history": VersionHistoryProjection(store.pool)})
        app = create_app(services, s3_settings, TokenService(store.pool))
        headers = {"Authorization": f"Bearer {await new_token(store, 'admin')}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test", headers=headers) as http:
            response = await http.post("/graphql", json={
                "query": "mutation($in: IngestInput!) { ingest(input: $in) {"
                         " version { digest text } } }",
                "variables": {"in": {"namespace": names, "name": "notes", "text": "hello s3"}}})
    finally:
        await nc.close()
    assert response.status_code == 200, response.text
    version = response.json()["data"]["ingest"]["version"]
    assert version["text"] == "hello s3"
    assert f"artifacts/{version['digest']}" in object_keys(s3_endpoint, bucket)


async def test_an_unreachable_store_refuses_the_ingest_and_writes_nothing(
    store: PostgresEventStore, settings: Settings, aws_environment: None, names: str,
) -> None:
    down = settings.with_overrides(content_store="s3://missing-bucket",
                                   s3_endpoint=f"http://127.0.0.1:{free_port()}")
    service = ArtifactService(PostgresEventStore(store.pool, content_store_for(down, store.pool)),
                              max_content_bytes=down.max_content_bytes)
    with pytest.raises(Unavailable, match="content store") as raised:
        await service.ingest(IngestVersion(names, "x", text="lost?"))
    assert raised.value.code == "UNAVAILABLE"
    assert await store.load_stream(names, "x") == []


async def test_credentials_never_appear_in_logs_or_reprs(
    store: PostgresEventStore, s3_settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    contents = content_store_for(s3_settings, store.pool)
    stored = content({"secretive": uuid.uuid4().hex})
    await contents.put_many([stored])
    assert await contents.get(stored.digest) == stored.data
    assert caplog.records  # botocore did log its requests at DEBUG
    assert SECRET not in caplog.text
    assert SECRET not in repr(contents)
    assert SECRET not in repr(s3_settings)


@pytest.mark.parametrize("url", ["s3://", "s3://UPPER/x", "file:///tmp/x", "s3:/b/x"])
def test_a_bad_store_setting_is_a_clear_error(settings: Settings, url: str) -> None:
    with pytest.raises(ValidationError, match="ARTIFACTLOG_CONTENT_STORE"):
        content_store_for(settings.with_overrides(content_store=url), None)  # type: ignore[arg-type]


async def test_a_bad_digest_never_becomes_an_object_key(s3_settings: Settings) -> None:
    contents = content_store_for(s3_settings, None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="sha256"):
        await contents.get("../../etc/passwd")


async def test_any_media_type_is_stored(s3_settings: Settings) -> None:
    contents = content_store_for(s3_settings, None)  # type: ignore[arg-type]
    odd = encode_content(text=uuid.uuid4().hex, media_type="text/x-ünï\r\nX-Injected: 1",
                         max_bytes=1024)
    await contents.put_many([odd])
    assert await contents.get(odd.digest) == odd.data
