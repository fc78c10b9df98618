"""Webhooks and retention as a user drives them: `artifactlog up` (which runs the webhook
dispatcher beside the relay), the CLI, and a real HTTP receiver on 127.0.0.1. Writes that are
not about webhooks go through GraphQL over HTTP: each CLI process costs about a second of CPU.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.runtime import free_port
from tests.e2e.test_up import Up, pids_using
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    home: Path = tmp_path_factory.mktemp("webhooks") / "home"
    try:
        server = Up(home, free_port())
        try:
            yield server
        finally:
            server.stop(signal.SIGTERM)
    finally:
        for pid in pids_using(home):  # never leave servers behind, even on failure
            os.kill(pid, signal.SIGKILL)


def graphql(up: Up, query: str, **variables: Any) -> dict[str, Any]:
    state = json.loads((up.home / "state.json").read_text())
    response = httpx.post(f"{state['api_url']}/graphql", json={
        "query": query, "variables": variables},
        headers={"Authorization": f"Bearer {state['token']}"}, timeout=30)
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


def ingest(up: Up, ns: str, name: str, text: str) -> None:
    graphql(up, "mutation($i: IngestInput!) { ingest(input: $i) { position } }",
            i={"namespace": ns, "name": name, "text": text})


def promote(up: Up, ns: str, name: str, number: int, reason: str | None = None) -> None:
    graphql(up, "mutation($r: VersionRefInput!, $why: String) { promote(ref: $r, "
            "reason: $why) { position } }",
            r={"namespace": ns, "name": name, "number": number}, why=reason)


def run(up: Up, *args: str, stdin: str | None = None) -> str:
    done = up.cli(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_promotions_reach_a_receiver_signed_and_logged(up: Up) -> None:
    receiver = Receiver()
    out = run(up, "webhooks", "create", receiver.url, "--event-type", "VersionPromoted",
              "--namespace", "ml")
    webhook_id = out.split()[1]
    receiver.secret = out.strip().splitlines()[-1].split()[-1]
    assert receiver.secret.startswith("whsec_")
    receiver.start()
    try:
        for text in ("one", "two"):
            ingest(up, "ml", "model", text)
        ingest(up, "other", "model", "not ours")
        promote(up, "ml", "model", 1)
        promote(up, "ml", "model", 2, "better")
        promote(up, "other", "model", 1)
        deadline = time.monotonic() + 30
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        receiver.stop()
    assert [r.body["version"]["number"] for r in receiver.received] == [1, 2]
    assert all(r.verified for r in receiver.received)
    second = receiver.received[1].body
    assert second["previous"]["production"]["number"] == 1
    assert second["actor"] == "admin"  # the local admin token's name
    assert second["event"]["payload"]["reason"] == "better"
    log = json.loads(run(up, "webhooks", "deliveries", webhook_id, "--json"))
    assert [(d["status"], d["attemptCount"]) for d in log] == [("DELIVERED", 1)] * 2
    listed = run(up, "webhooks", "list")
    assert webhook_id in listed
    assert receiver.secret not in listed


def test_bad_input_is_a_coded_error(up: Up) -> None:
    query = "query { webhooks { id } retentionPolicies { namespace } }"
    before = graphql(up, query)
    for args in (("webhooks", "create", "ftp://127.0.0.1/h"),
                 ("webhooks", "create", "http://127.0.0.1/h", "--event-type", "Promoted"),
                 ("retention", "set", "ml", "-1"),
                 ("retention", "apply", "--namespace", "bad/ns")):
        done = up.cli(*args)
        assert done.returncode != 0, args
        assert "[VALIDATION]" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert graphql(up, query) == before  # nothing written


def test_retention_and_archive_commands(up: Up) -> None:
    ingest(up, "rt", "draft", "young")
    assert "purge drafts never promoted after 30 days" in run(up, "retention", "set", "rt",
                                                              "30")
    dry = run(up, "retention", "apply", "--dry-run", "--namespace", "rt")
    assert "0 version(s) would purge" in dry  # a young draft stays
    assert "archived" in run(up, "archive", "rt/draft", "--reason", "done")
    missing = up.cli("archive", "rt/missing")
    assert missing.returncode != 0
    assert "[NOT_FOUND]" in missing.stderr
