"""GraphiQL in a real browser against a real `artifactlog up`, with no internet: the page,
its scripts and styles all come from our server, and a query run from the IDE answers.

The browser is Debian's chromium (``apt-get install chromium``), driven by Playwright's
Python package; ``playwright install`` is never needed (it downloads a browser of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import (
    ConsoleMessage,
    Request,
    Response,
    Route,
    WebSocket,
    expect,
    sync_playwright,
)

from api.auth import COOKIE_NAME
from api.graphiql import ASSETS, STATIC_URL
from core.runtime import free_port
from tests.e2e.test_up import Up, pids_using

CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "graphiql.png"
QUERY = "{ status { headPosition } }"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Headless, and none of the browser's own traffic (updates, sync, QUIC probes) that would
# try the network on its own.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@dataclass
class Server:
    url: str
    token: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("graphiql") / "home"
    try:
        up = Up(home, free_port())
        try:
            state = json.loads((home / "state.json").read_text())
            yield Server(state["api_url"].rstrip("/"), state["token"])
        finally:
            up.stop(signal.SIGTERM)
    finally:
        for pid in pids_using(home):  # never leave servers behind, even on failure
            os.kill(pid, signal.SIGKILL)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname in LOCAL_HOSTS


def test_assets_are_served_without_a_token(server: Server) -> None:
    """A browser fetches the scripts before anyone could paste a token into the page."""
    for name in ASSETS.values():
        response = httpx.get(f"{server.url}{STATIC_URL}/{name}")
        assert response.status_code == 200, (name, response.status_code)
    page = httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "unpkg.com" not in page.text
    assert f"{STATIC_URL}/graphiql.min.js" in page.text


def test_a_query_runs_in_graphiql_offline(server: Server) -> None:
    assert CHROMIUM is not None
    elsewhere: list[str] = []  # requests the page tried to send off this machine
    failed: list[str] = []  # local requests that did not answer 2xx/3xx
    errors: list[str] = []  # console errors and uncaught exceptions (an SRI refusal shows here)

    def offline(route: Route) -> None:
        # Where there is internet, answer as if there were none: the test means the same on
        # every machine.
        if is_local(route.request.url):
            route.continue_()
        else:
            route.abort("internetdisconnected")

    def on_request(request: Request) -> None:
        if not is_local(request.url):
            elsewhere.append(request.url)

    def on_response(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.url}: {response.status}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_websocket(websocket: WebSocket) -> None:
        if not is_local(websocket.url):
            elsewhere.append(websocket.url)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            # The token as a browser session carries it: the cookie our auth accepts, sent
            # with the page's same-origin fetches.
            context.add_cookies([{"name": COOKIE_NAME, "value": server.token,
                                  "url": server.url}])
            context.route("**/*", offline)
            context.on("request", on_request)
            context.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            context.on("response", on_response)
            context.on("console", on_console)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("websocket", on_websocket)

            # ?q= is the page's own way to prefill the editor; it is not `query`, so
            # strawberry renders the IDE instead of executing it (and auth lets it through).
            opened = page.goto(f"{server.url}/graphql?q={quote(QUERY, safe='')}")
            assert opened is not None
            assert opened.status == 200
            assert opened.headers["content-type"].startswith("text/html")
            try:
                expect(page.locator(".graphiql-query-editor")).to_contain_text(
                    "headPosition", timeout=15_000)
            except AssertionError as exc:  # the page stays at "Loading...": say why
                raise AssertionError(f"GraphiQL did not start; requests off this machine: "
                                     f"{elsewhere}, failed: {failed}, errors: {errors}"
                                     ) from exc
            assert page.evaluate("typeof GraphiQLPluginExplorer") == "object"

            with page.expect_response(lambda r: r.request.method == "POST"
                                      and "headPosition" in (r.request.post_data or "")
                                      ) as answered:
                page.locator(".graphiql-execute-button").click()
            body = answered.value.json()
            assert answered.value.status == 200, body
            assert "errors" not in body, body
            assert isinstance(body["data"]["status"]["headPosition"], int), body
            expect(page.locator(".graphiql-response")).to_contain_text('"headPosition"',
                                                                      timeout=10_000)

            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()

    assert elsewhere == [], "the page tried to reach another host"
    assert failed == []
    assert errors == []
