"""The dashboard's pages over HTTP, in-process, on the real engines: sign-in and the session
cookie, what each page shows, escaping of user data, namespace limits, and a clear 4xx page
for every bad request (never a 500)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.dashboard_auth import SESSION_COOKIE
from api.server import build_services
from core.auth import TokenService
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.jetstream import connect
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.conftest import new_token

pytestmark = pytest.mark.anyio

XSS = "<script>alert('x')</script>"
INGEST = """mutation($input: IngestInput!) { ingest(input: $input) { position
  version { number } } }"""
PROMOTE = """mutation($ref: VersionRefInput!, $reason: String) {
  promote(ref: $ref, reason: $reason) { position } }"""
WAIT = """query($ns: String!, $n: String!, $p: Int) {
  artifact(namespace: $ns, name: $n, minPosition: $p) { name } }"""


@dataclass
class Dashboard:
    http: httpx.AsyncClient  # no credentials of its own
    admin: str  # an admin token
    store: PostgresEventStore

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.admin}"})
        body = dict(response.json())
        assert response.status_code == 200, body
        assert "errors" not in body, body
        return dict(body["data"])

    async def wait(self, namespace: str, name: str, position: int) -> None:
        """Until the read model has applied ``position`` (the workers may still be starting)."""
        deadline = time.monotonic() + 60
        while True:
            response = await self.http.post(
                "/graphql", json={"query": WAIT, "variables": {
                    "ns": namespace, "n": name, "p": position}},
                headers={"Authorization": f"Bearer {self.admin}"})
            errors = response.json().get("errors")
            if not errors:
                return
            assert errors[0]["extensions"]["code"] == "TIMEOUT", errors
            assert time.monotonic() < deadline, "the read model did not catch up in 60 s"

    async def sign_in(self, token: str) -> httpx.Response:
        return await self.http.post("/dashboard/login", data={"token": token, "next": "/"})


@pytest.fixture
async def dash(store: PostgresEventStore, settings: Settings, workers: None
               ) -> AsyncIterator[Dashboard]:
    assert settings.nats_url
    nc = await connect(settings.nats_url, name="dashboard-test")
    services = build_services(store.pool, nc.jetstream(), settings,
                              {"version_history": VersionHistoryProjection(store.pool)})
    app = create_app(services, settings, TokenService(store.pool))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        yield Dashboard(http, await new_token(store, "admin"), store)
    await nc.close()


async def seed(dash: Dashboard, ns: str) -> None:
    """raw@1, raw@2 (promoted), clean@1 <- raw@1 + raw@2, model@1 <- clean@1; user data that
    looks like markup in metadata, producer and the promotion reason."""
    async def ingest(name: str, content: Any, **fields: Any) -> int:
        data = await dash.gql(INGEST, input={"namespace": ns, "name": name,
                                             "content": content, **fields})
        return int(data["ingest"]["position"])

    await ingest("raw", [1], metadata={"note": XSS}, producer="etl-<b>bold</b>")
    await ingest("raw", [1, 2], metadata={"rows": 2})
    await dash.gql(PROMOTE, ref={"namespace": ns, "name": "raw", "number": 2}, reason=XSS)
    await ingest("clean", {"rows": 2}, parents=[{"namespace": ns, "name": "raw", "number": 1},
                                                {"namespace": ns, "name": "raw", "number": 2}])
    last = await ingest("model", {"w": 1}, parents=[{"namespace": ns, "name": "clean"}])
    await dash.wait(ns, "model", last)


async def signed_in(dash: Dashboard, *scopes: str, namespaces: list[str] | None = None) -> str:
    token = await new_token(dash.store, *scopes, namespaces=namespaces)
    response = await dash.sign_in(token)
    assert response.status_code == 303, response.text
    return token


async def test_pages_redirect_to_the_sign_in_form_without_a_token(dash: Dashboard) -> None:
    for path in ("/", "/dashboard/artifacts/a/b", "/dashboard/lineage/a/b/1?depth=2"):
        response = await dash.http.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/dashboard/login?next=")
    form = await dash.http.get("/dashboard/login?next=/dashboard/artifacts/a/b")
    assert form.status_code == 200
    assert 'name="token"' in form.text
    assert 'action="/dashboard/login?next=/dashboard/artifacts/a/b"' in form.text


async def test_signing_in_sets_a_strict_http_only_cookie_for_pages_only(
        dash: Dashboard, names: str) -> None:
    token = await new_token(dash.store, "read")
    response = await dash.http.post(
        "/dashboard/login?next=/dashboard/artifacts/x/y", data={"token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/artifacts/x/y"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={token};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    home = await dash.http.get("/")
    assert home.status_code == 200
    assert "Content-Security-Policy" in home.headers
    # The session cookie authorizes nothing but the dashboard's pages (CSRF): not GraphQL.
    mutation = await dash.http.post("/graphql", json={"query": INGEST, "variables": {
        "input": {"namespace": names, "name": "csrf", "content": 1}}})
    assert mutation.status_code == 401
    query = await dash.http.post("/graphql", json={"query": "{ status { headPosition } }"})
    assert query.status_code == 401
    signed_out = await dash.http.post("/dashboard/logout")
    assert signed_out.status_code == 303
    assert f'{SESSION_COOKIE}=""' in signed_out.headers["set-cookie"]
    assert (await dash.http.get("/")).status_code == 303


async def test_sign_in_refuses_bad_tokens_and_foreign_forms(dash: Dashboard) -> None:
    wrong = await dash.sign_in("al_" + "x" * 43)
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text
    assert "set-cookie" not in wrong.headers
    malformed = await dash.sign_in("not a token")
    assert malformed.status_code == 401
    write_only = await dash.sign_in(await new_token(dash.store, "write"))
    assert write_only.status_code == 403
    assert "lacks the read scope" in write_only.text
    token = await new_token(dash.store, "read")
    forged = await dash.http.post("/dashboard/login", data={"token": token},
                                  headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers
    elsewhere = await dash.http.post("/dashboard/login?next=//evil.example/x",
                                     data={"token": token})
    assert elsewhere.headers["location"] == "/"


async def test_a_revoked_session_goes_back_to_the_form(dash: Dashboard) -> None:
    tokens = TokenService(dash.store.pool)
    token, info = await tokens.create(f"dash-{id(dash)}", ["read"])
    assert (await dash.sign_in(token)).status_code == 303
    assert (await dash.http.get("/")).status_code == 200
    await tokens.revoke(info.name)
    again = await dash.http.get("/")
    assert again.status_code == 303
    assert "reason=expired" in again.headers["location"]
    form = await dash.http.get(again.headers["location"])
    assert "is not valid (revoked, unknown or malformed)" in form.text
    # Only the known reasons are printed: a crafted link cannot word our sign-in page.
    crafted = await dash.http.get("/dashboard/login?reason=Paste+your+token+at+evil.example")
    assert "evil.example" not in crafted.text


async def test_a_bearer_header_works_without_the_form(dash: Dashboard, names: str) -> None:
    await seed(dash, names)
    response = await dash.http.get(f"/dashboard/artifacts/{names}/raw",
                                   headers={"Authorization": f"Bearer {dash.admin}"})
    assert response.status_code == 200
    assert f"{names}/raw" in response.text


async def test_home_shows_status_charts_and_recent_activity(dash: Dashboard, names: str
                                                           ) -> None:
    await seed(dash, names)
    await signed_in(dash, "read")
    page = await dash.http.get("/")
    assert page.status_code == 200
    text = page.text
    assert 'data-projection="version_history"' in text
    assert re.search(r'class="head">\d+<', text)
    assert text.count('class="bar"') == 60  # one bar per minute of the last hour
    assert re.search(r"ingests?</title>", text)
    recent = text.split('id="recent-ingests"')[1].split('id="recent-promotions"')[0]
    assert f"/dashboard/artifacts/{names}/model" in recent
    promotions = text.split('id="recent-promotions"')[1].split('id="artifacts"')[0]
    assert f"/dashboard/lineage/{names}/raw/2" in promotions
    assert XSS not in text
    assert "&lt;script&gt;" in promotions
    narrow = await dash.http.get("/?minutes=5&prefix=mod")
    assert narrow.text.count('class="bar"') == 5
    listed = re.findall(r'href="/dashboard/artifacts/[^/"]+/([^"]+)"',
                        narrow.text.split('id="artifacts"')[1])
    assert listed
    assert all(name.startswith("mod") for name in listed)


async def test_the_artifact_page_shows_history_stages_and_promotions(dash: Dashboard,
                                                                     names: str) -> None:
    await seed(dash, names)
    await signed_in(dash, "read")
    page = await dash.http.get(f"/dashboard/artifacts/{names}/raw")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-number="(\d+)" data-stage="(\w+)">', page.text)
    assert rows == [("1", "DRAFT"), ("2", "PRODUCTION")]
    timeline = page.text.split('id="promotions"')[1]
    assert re.findall(r'<li data-number="(\d+)">', timeline) == ["2"]
    # User data is shown, inert: escaped in text and attributes alike.
    assert XSS not in page.text
    assert "<b>bold</b>" not in page.text
    assert "etl-&lt;b&gt;bold&lt;/b&gt;" in page.text
    assert "&lt;script&gt;alert(" in timeline
    production = await dash.http.get(f"/dashboard/artifacts/{names}/raw?stage=production")
    assert re.findall(r'<tr data-number="(\d+)"', production.text) == ["2"]


async def test_the_lineage_page_draws_every_version_and_edge(dash: Dashboard, names: str
                                                            ) -> None:
    await seed(dash, names)
    await signed_in(dash, "read")
    page = await dash.http.get(f"/dashboard/lineage/{names}/clean/1")
    assert page.status_code == 200
    nodes = set(re.findall(r'<g class="node[^"]*" data-version="([^"]+)"', page.text))
    assert nodes == {f"{names}/raw@1", f"{names}/raw@2", f"{names}/clean@1",
                     f"{names}/model@1"}
    edges = set(re.findall(r'data-parent="([^"]+)" data-child="([^"]+)"', page.text))
    assert edges == {(f"{names}/raw@1", f"{names}/clean@1"),
                     (f"{names}/raw@2", f"{names}/clean@1"),
                     (f"{names}/clean@1", f"{names}/model@1")}
    assert f'class="node stage-draft root" data-version="{names}/clean@1"' in page.text
    shallow = await dash.http.get(f"/dashboard/lineage/{names}/model/1?depth=1")
    assert set(re.findall(r'data-version="([^"]+)"', shallow.text)) == {
        f"{names}/clean@1", f"{names}/model@1"}


async def test_a_namespace_limited_token_sees_only_its_namespaces(dash: Dashboard,
                                                                  names: str) -> None:
    other = f"{names}o"
    await seed(dash, names)
    await dash.gql(INGEST, input={"namespace": other, "name": "derived", "content": 1,
                                  "parents": [{"namespace": names, "name": "model"}]})
    last = await dash.gql(INGEST, input={"namespace": other, "name": "derived",
                                         "content": 2})
    await dash.wait(other, "derived", last["ingest"]["position"])
    await signed_in(dash, "read", namespaces=[other])
    home = await dash.http.get("/")
    assert f"/dashboard/artifacts/{other}/derived" in home.text
    assert f"/dashboard/artifacts/{names}/" not in home.text
    refused = await dash.http.get(f"/dashboard/artifacts/{names}/raw")
    assert refused.status_code == 403
    assert "may not access namespace" in refused.text
    lineage = await dash.http.get(f"/dashboard/lineage/{other}/derived/1")
    assert lineage.status_code == 200
    assert set(re.findall(r'data-version="([^"]+)"', lineage.text)) == {f"{other}/derived@1"}
    # model@1 is hidden, and so is what lies beyond it (clean@1, raw@1, raw@2).
    assert "4 versions in namespaces your token cannot read are not shown." in lineage.text
    assert "No edges between versions your token may read" in lineage.text


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/?minutes=abc", 400, "minutes must be a whole number"),
    ("/?minutes=0", 400, "minutes must be between 5 and 1440"),
    ("/?prefix=%3Cx%3E", 400, "prefix must be the start of a name"),
    ("/dashboard/artifacts/{ns}/raw?stage=LIVE", 400, "stage must be one of"),
    ("/dashboard/artifacts/{ns}/raw?after=-1", 400, "after must be between"),
    ("/dashboard/lineage/{ns}/raw/x", 400, "version number must be a whole number"),
    ("/dashboard/lineage/{ns}/raw/99999999999", 400, "version number must be between"),
    ("/dashboard/lineage/{ns}/raw/1?depth=101", 400, "depth must be between 1 and 100"),
    ("/dashboard/lineage/{ns}/raw/7", 404, "does not exist"),
    ("/dashboard/artifacts/{ns}/missing", 404, "there is no artifact"),
    ("/dashboard/artifacts/{ns}/nul%00byte", 404, "there is no artifact"),
    ("/dashboard/lineage/{ns}/missing/1", 404, "does not exist"),
])
async def test_bad_requests_get_a_clear_page(dash: Dashboard, names: str, path: str,
                                             status: int, says: str) -> None:
    await seed(dash, names)
    await signed_in(dash, "read")
    response = await dash.http.get(path.format(ns=names))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert says in response.text


async def test_a_markup_name_in_the_path_is_shown_inert(dash: Dashboard) -> None:
    await signed_in(dash, "read")
    response = await dash.http.get("/dashboard/artifacts/ns/%3Cimg%20src%3Dx%20onerror%3D"
                                   "alert(1)%3E")
    assert response.status_code == 404
    assert "<img" not in response.text
    assert "ns/&lt;img src=x onerror=alert(1)&gt;" in response.text


async def test_the_stylesheet_is_served_without_a_token(dash: Dashboard) -> None:
    response = await dash.http.get("/static/dashboard/dashboard.css")
    assert response.status_code == 200
    assert "svg.lineage" in response.text


async def test_a_long_history_opens_at_its_newest_versions(dash: Dashboard, names: str
                                                           ) -> None:
    inputs = [{"namespace": names, "name": "long", "content": i} for i in range(105)]
    body = await dash.gql("mutation($inputs: [IngestInput!]!) { ingestBatch(inputs: $inputs)"
                          " { result { position } } }", inputs=inputs)
    await dash.wait(names, "long", body["ingestBatch"][-1]["result"]["position"])
    await signed_in(dash, "read")

    async def numbers(query: str) -> tuple[list[int], str]:
        page = await dash.http.get(f"/dashboard/artifacts/{names}/long{query}")
        assert page.status_code == 200
        return [int(n) for n in re.findall(r'<tr data-number="(\d+)"', page.text)], page.text

    newest, text = await numbers("")
    assert newest == list(range(6, 106))
    assert 'href="?after=0"' in text
    assert "newer versions" not in text
    oldest, text = await numbers("?after=0")
    assert oldest == list(range(1, 101))
    assert 'href="?after=100"' in text
    assert (await numbers("?after=100"))[0] == list(range(101, 106))


async def test_an_unreachable_dependency_is_a_503_page(store: PostgresEventStore,
                                                       settings: Settings) -> None:
    """NATS gone (a closed connection): the status comes from the checkpoints alone. Postgres
    gone too (a closed pool): a clear 503 page, never a 500."""
    assert settings.nats_url
    assert settings.database_url
    pool = await open_pool(settings.database_url, max_size=2)
    nc = await connect(settings.nats_url, name="dashboard-down")
    services = build_services(pool, nc.jetstream(), settings,
                              {"version_history": VersionHistoryProjection(pool)})
    app = create_app(services, settings, TokenService(pool))
    token = await new_token(store, "read")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test",
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        assert (await http.get("/")).status_code == 200
        await nc.close()
        no_nats = await http.get("/")
        assert no_nats.status_code == 200
        assert 'data-projection="version_history"' in no_nats.text
        await pool.close()
        for path in ("/", "/dashboard/artifacts/a/b", "/dashboard/lineage/a/b/1"):
            no_postgres = await http.get(path)
            assert no_postgres.status_code == 503, path
            assert "UNAVAILABLE" in no_postgres.text
