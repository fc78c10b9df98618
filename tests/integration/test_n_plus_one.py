"""A history page costs a bounded number of SQL statements, however many versions, parents
and children it shows: counted at the connection, as Postgres receives them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from api.server import build_services
from core.auth import TokenService
from core.commands import IngestVersion, VersionRef
from core.jetstream import connect
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.conftest import new_token

pytestmark = pytest.mark.anyio
STATEMENTS: list[str] = []


class CountingCursor(AsyncCursor[Any]):
    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        STATEMENTS.append(str(query))
        return await super().execute(query, params, **kwargs)


class CountingConnection(AsyncConnection[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = CountingCursor


@pytest.fixture
async def http(settings: Settings, workers: None) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.database_url
    assert settings.nats_url
    pool = AsyncConnectionPool(settings.database_url, connection_class=CountingConnection,
                               open=False)
    await pool.open()
    nc = await connect(settings.nats_url, name="test")
    services = build_services(pool, nc.jetstream(), settings,
                              {"version_history": VersionHistoryProjection(pool)})
    app = create_app(services, settings, TokenService(pool))
    token = await new_token(services.artifacts.store, "read")  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        client.services = services  # type: ignore[attr-defined]
        yield client
    await nc.close()
    await pool.close()


PAGE = """query($ns: String!, $first: Int, $min: Int) {
  artifact(namespace: $ns, name: "model", minPosition: $min) {
    production { number } latest { number }
    versions(first: $first) { totalCount edges { node { number label stage digest
      parents { namespace name number label stage } children { name number stage } } } } } }"""


async def statements_for_page(http: httpx.AsyncClient, ns: str, first: int, min_: int
                              ) -> int:
    STATEMENTS.clear()
    response = await http.post("/graphql", json={"query": PAGE, "variables": {
        "ns": ns, "first": first, "min": min_}})
    body = response.json()
    assert "errors" not in body, body
    assert len(body["data"]["artifact"]["versions"]["edges"]) == first
    return len(STATEMENTS)


async def test_a_page_of_versions_with_parents_and_children_is_a_fixed_number_of_queries(
    http: httpx.AsyncClient, names: str
) -> None:
    service = http.services.artifacts  # type: ignore[attr-defined]
    for i in range(100):
        await service.ingest(IngestVersion(names, "data", content={"i": i}))
    last = None
    for i in range(100):
        last = await service.ingest(IngestVersion(
            names, "model", content={"m": i},
            parents=(VersionRef(names, "data", i + 1), VersionRef(names, "data", 100 - i))))
    for i in range(50):
        await service.ingest(IngestVersion(names, "report", content={"r": i},
                                           parents=(VersionRef(names, "model", i + 1),)))
    assert last is not None
    # Warm: the first request also looks its token up (then cached, api/auth.py).
    await statements_for_page(http, names, 10, last.position)
    small = await statements_for_page(http, names, 10, last.position)
    large = await statements_for_page(http, names, 100, last.position)
    print(f"SQL statements: page of 10 -> {small}, page of 100 -> {large}")
    assert large == small  # bounded: independent of the page size
    assert large <= 12
