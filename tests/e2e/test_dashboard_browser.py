"""The dashboard in a real browser against a real `artifactlog up`: sign in with a token
through the form, then the home page, an artifact's history and a lineage picture, each
checked against the data ingested and saved as a screenshot.

The browser is Debian's chromium (``apt-get install chromium``), driven by Playwright's
Python package; ``playwright install`` is never needed. Screenshots go to
``$ARTIFACTLOG_TEST_ARTIFACTS`` or ``test-artifacts/`` at the top of the checkout.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from api.dashboard_auth import SESSION_COOKIE
from core.auth import TokenService
from core.db import open_pool
from core.runtime import free_port
from tests.conftest import Engines, role_process
from tests.e2e.test_graphiql_browser import CHROMIUM_ARGS

CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed "
                                                "(no `chromium` on PATH)"),
]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTLOG_TEST_ARTIFACTS") or ROOT / "test-artifacts")
NS = f"shop{uuid.uuid4().hex[:8]}"  # the session database is shared with other tests
MARKUP = "<img src=x onerror=alert(1)>"
INGEST = """mutation($input: IngestInput!) { ingest(input: $input) { position } }"""
PROMOTE = """mutation($ref: VersionRefInput!, $reason: String) {
  promote(ref: $ref, reason: $reason) { position } }"""
WAIT = """query($ns: String!, $n: String!, $p: Int) {
  artifact(namespace: $ns, name: $n, minPosition: $p) { name } }"""


@dataclass
class Server:
    url: str
    viewer: str  # a read-only token limited to NS, typed into the sign-in form


def graphql(url: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return dict(response.json())


def seed(url: str, token: str) -> None:
    """orders@1, orders@2 (promoted), features@1 <- both orders, model@1 <- features@1."""
    def ingest(name: str, content: Any, **fields: Any) -> int:
        body = graphql(url, token, INGEST, input={"namespace": NS, "name": name,
                                                  "content": content, **fields})
        assert "errors" not in body, body
        return int(body["data"]["ingest"]["position"])

    ingest("orders", [{"id": 1}], metadata={"source": "pos", "note": MARKUP})
    ingest("orders", [{"id": 1}, {"id": 2}], metadata={"source": "pos"})
    body = graphql(url, token, PROMOTE, ref={"namespace": NS, "name": "orders", "number": 2},
                   reason="reconciled with finance")
    assert "errors" not in body, body
    ingest("features", {"cols": 3}, parents=[{"namespace": NS, "name": "orders", "number": 1},
                                            {"namespace": NS, "name": "orders", "number": 2}])
    last = ingest("model", {"w": [0.1]}, parents=[{"namespace": NS, "name": "features"}])
    deadline = time.monotonic() + 60
    while "errors" in (body := graphql(url, token, WAIT, ns=NS, n="model", p=last)):
        assert body["errors"][0]["extensions"]["code"] == "TIMEOUT", body
        assert time.monotonic() < deadline, "the read model did not catch up"


async def create_token(database_url: str, name: str, scope: str,
                       namespaces: list[str] | None = None) -> str:
    pool = await open_pool(database_url, max_size=1)
    try:
        token, _ = await TokenService(pool).create(name, [scope], namespaces)
        return token
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def server(engines: Engines, workers: None, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """`artifactlog run api` on the session's Postgres and NATS (its relay and projection
    workers are the session's too), with a chDB directory of its own."""
    home = tmp_path_factory.mktemp("dashboard")
    settings = engines.settings(home=home, port=free_port(),
                                clickhouse_url=f"chdb://{home / 'chdb'}")
    assert settings.database_url
    api = role_process(settings, "api")
    try:
        url = f"http://{settings.host}:{settings.port}"
        deadline = time.monotonic() + 60
        while not answers(f"{url}/healthz"):
            assert api.poll() is None, (home / "api.log").read_text()
            assert time.monotonic() < deadline, "the API did not answer within 60 s"
            time.sleep(0.1)
        suffix = uuid.uuid4().hex[:8]
        admin = asyncio.run(create_token(settings.database_url, f"admin-{suffix}", "admin"))
        seed(url, admin)
        # The viewer reads NS only, so the pages list nothing of the other tests' data.
        viewer = asyncio.run(create_token(settings.database_url, f"viewer-{suffix}", "read",
                                          [NS]))
        yield Server(url, viewer)
    finally:
        api.terminate()
        api.wait(30)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def shoot(page: Page, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():  # shown even when the test passes and output is captured
        print(f"\nscreenshot saved: {path}")


def test_the_dashboard_in_chromium(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert CHROMIUM is not None
    errors: list[str] = []  # console errors (a CSP refusal shows here) and page exceptions
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))

            # Signed out, the artifact page sends us to the form, and back after it.
            page.goto(f"{server.url}/dashboard/artifacts/{NS}/orders")
            expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
            page.fill("#token", server.viewer)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{server.url}/dashboard/artifacts/{NS}/orders")
            check_session_cookie(context.cookies(), page, server)
            check_artifact_page(page)
            shoot(page, "dashboard-artifact.png", capsys)

            page.goto(f"{server.url}/dashboard/lineage/{NS}/features/1")
            check_lineage_page(page)
            shoot(page, "dashboard-lineage.png", capsys)

            page.goto(f"{server.url}/")
            check_home_page(page)
            shoot(page, "dashboard-home.png", capsys)
        finally:
            browser.close()
    assert errors == []


def check_session_cookie(cookies: Any, page: Page, server: Server) -> None:
    [session] = [c for c in cookies if c["name"] == SESSION_COOKIE]
    assert session["value"] == server.viewer
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert server.viewer not in page.evaluate("document.cookie")  # no script can read it


def check_artifact_page(page: Page) -> None:
    expect(page.locator("h1.artifact-name")).to_have_text(f"{NS}/orders")
    rows = page.locator("table.versions tbody tr")
    expect(rows).to_have_count(2)
    assert [(r.get_attribute("data-number"), r.get_attribute("data-stage"))
            for r in rows.all()] == [("1", "DRAFT"), ("2", "PRODUCTION")]
    expect(rows.nth(1).locator(".stage")).to_have_text("PRODUCTION")
    # The metadata that looks like markup is text on the page, not an element.
    expect(rows.nth(0).locator("td.metadata")).to_contain_text(MARKUP)
    assert page.locator("table.versions img").count() == 0
    timeline = page.locator("ol.timeline li")
    expect(timeline).to_have_count(1)
    expect(timeline.first).to_contain_text("v2 to production")
    expect(timeline.first).to_contain_text("reconciled with finance")


def check_lineage_page(page: Page) -> None:
    nodes = page.locator("svg.lineage g.node")
    expect(nodes).to_have_count(4)
    assert {n.get_attribute("data-version") for n in nodes.all()} == {
        f"{NS}/orders@1", f"{NS}/orders@2", f"{NS}/features@1", f"{NS}/model@1"}
    edges = page.locator("svg.lineage path.edge")
    expect(edges).to_have_count(3)
    assert {(e.get_attribute("data-parent"), e.get_attribute("data-child"))
            for e in edges.all()} == {(f"{NS}/orders@1", f"{NS}/features@1"),
                                      (f"{NS}/orders@2", f"{NS}/features@1"),
                                      (f"{NS}/features@1", f"{NS}/model@1")}
    # Drawn, not just present: the browser laid every box out, parents left of children.
    boxes = {n.get_attribute("data-version"): n.bounding_box() for n in nodes.all()}
    assert all(b is not None and b["width"] > 100 and b["height"] > 20 for b in boxes.values())
    x = {key: box["x"] for key, box in boxes.items() if box is not None}
    assert x[f"{NS}/orders@1"] < x[f"{NS}/features@1"] < x[f"{NS}/model@1"]
    expect(page.locator("svg.lineage g.node.root")).to_have_attribute(
        "data-version", f"{NS}/features@1")
    expect(page.locator("g.node.stage-production")).to_have_attribute(
        "data-version", f"{NS}/orders@2")


def check_home_page(page: Page) -> None:
    expect(page.locator('#status tr[data-projection="version_history"]')).to_have_count(1)
    expect(page.locator("svg.chart.ingests rect.bar")).to_have_count(60)
    assert page.locator("svg.chart.ingests rect.bar[height]").evaluate_all(
        "bars => bars.filter(b => b.getBBox().height > 0).length") >= 1
    # The server's sampler took a sample when it started: each projection has a point.
    expect(page.locator(".legend")).to_contain_text("version_history")
    assert page.locator("svg.chart.lag polyline, svg.chart.lag circle").count() >= 2
    expect(page.locator("#recent-ingests")).to_contain_text(f"{NS}/model")
    expect(page.locator("#recent-promotions")).to_contain_text(f"{NS}/orders")
    expect(page.locator("#artifacts")).to_contain_text(f"{NS}/features")
