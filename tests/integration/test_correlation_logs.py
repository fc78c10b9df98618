"""One correlation id from the HTTP request to the event's metadata, the relay's publish (log
line and NATS header) and the projection's apply log line, all JSON lines; and no token or
password in any of it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from core.jetstream import CORRELATION_HEADER
from core.logs import setup_logging
from core.settings import Settings
from tests.integration.observed import INGEST, observed_app, version_history_worker
from tests.integration.streams import System, open_system, running, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Every log record as the processes write them (JSON lines: not a terminal)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    setup_logging("DEBUG", stream=out)
    yield out
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def entries(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_one_id_follows_an_ingest_to_the_projection(
        system: System, log_output: io.StringIO) -> None:
    cid = "trace-7f3a-0001"
    async with observed_app(system) as app:
        response = await app.graphql(INGEST, headers={"X-Correlation-Id": cid},
                                     input={"namespace": "ns", "name": "traced", "text": "x"})
        assert response.json()["data"]["ingest"]["created"] is True
        assert response.headers["X-Correlation-Id"] == cid
        (event,) = await system.store.read_after(0, 10)
        assert event.metadata["correlationId"] == cid

        relay = system.relay()
        await relay.resume()
        await relay.publish_pending()
        message = await system.js.get_msg(system.settings.stream_name, 1)
        assert (message.headers or {})[CORRELATION_HEADER] == cid

        async def applied() -> bool:
            return any(e.get("message", "").startswith("projection=version_history applied")
                       for e in entries(log_output))
        async with running(version_history_worker(system).run):
            await wait_until(applied, within=30)

    traced = [(e["logger"], e["message"]) for e in entries(log_output)
              if e.get("correlation_id") == cid]
    loggers = [logger for logger, _ in traced]
    assert "artifactlog.http" in loggers  # the request's access line
    assert ("artifactlog.relay", "relay published position=1") in traced
    assert ("artifactlog.projections",
            "projection=version_history applied position=1") in traced


async def test_a_request_without_an_id_gets_a_new_one(system: System,
                                                      log_output: io.StringIO) -> None:
    async with observed_app(system) as app:
        first = await app.http.get("/healthz")
        second = await app.http.get("/healthz", headers={"X-Correlation-Id": "bad id\t!"})
    ids = [first.headers["X-Correlation-Id"], second.headers["X-Correlation-Id"]]
    assert len(set(ids)) == 2
    assert all(len(i) == 32 for i in ids)
    http = [e for e in entries(log_output) if e["logger"] == "artifactlog.http"]
    assert [e["correlation_id"] for e in http] == ids
    assert [(e["route"], e["status"]) for e in http] == [("/healthz", 200)] * 2


async def test_tokens_and_passwords_never_reach_the_logs(
        system: System, log_output: io.StringIO, fresh_settings: Settings) -> None:
    assert fresh_settings.database_url
    async with observed_app(system) as app:
        ok = await app.graphql(INGEST, input={"namespace": "ns", "name": "s", "text": "x"})
        assert ok.status_code == 200
        wrong = "al_" + "w" * 40
        refused = await app.http.post("/graphql", json={"query": "{ status { state } }"},
                                      headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401
        # a failing dependency whose message quotes the DSN, as libpq's do
        logging.getLogger("artifactlog.test").error(
            "cannot reach %s", "postgresql://app:dsn-pa55word@db:5432/x")
        token = app.token
    text = log_output.getvalue()
    assert len(entries(log_output)) >= 3  # the requests were logged...
    for secret in (token, token.removeprefix("al_"), wrong, "dsn-pa55word"):
        assert secret not in text  # ...and no secret was
