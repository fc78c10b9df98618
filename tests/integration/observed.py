"""The HTTP app over a System of its own, for the metrics, health, lag alert and log tests."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from api.context import Services
from api.server import build_services
from core.analytics_sql import ReadOnlySql
from core.auth import TokenService
from core.jetstream import connect, ensure_stream
from core.settings import Settings
from projections.leases import PartitionLeases
from projections.parking import ParkingLot
from projections.runner import ProjectionWorker
from projections.version_history import VersionHistoryProjection
from tests.integration.streams import System

INGEST = """mutation($input: IngestInput!) { ingest(input: $input) {
  created position version { number size } } }"""
STATUS = """{ status { headPosition state projections { name position lag lagSeconds parked
  state alertReason lagAlertEvents lagAlertSeconds } } }"""


@dataclass
class Observed:
    http: httpx.AsyncClient
    services: Services
    token: str

    async def graphql(self, query: str, headers: dict[str, str] | None = None,
                      **variables: object) -> httpx.Response:
        return await self.http.post("/graphql", json={"query": query, "variables": variables},
                                    headers=headers or {})

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics by (name, sorted labels)."""
        response = await self.http.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(response.text)
                for s in family.samples}


def sample(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@asynccontextmanager
async def observed_app(system: System, settings: Settings | None = None, *,
                       analytics: ReadOnlySql | None = None,
                       nats_url: str | None = None,
                       token_pool: AsyncConnectionPool | None = None
                       ) -> AsyncIterator[Observed]:
    """The app built as the server builds it, over ``system`` (or another NATS server;
    tokens live in ``token_pool`` when the system's own database is meant to be down)."""
    settings = settings or system.settings
    nc = system.nats if nats_url is None else await connect(nats_url, name="observed")
    if nats_url is not None:
        await ensure_stream(nc.jetstream(), settings)
    services = build_services(system.pool, nc.jetstream(), settings,
                              {"version_history": VersionHistoryProjection(system.pool)},
                              analytics)
    tokens = TokenService(token_pool or system.pool)
    token, _ = await tokens.create(f"observer-{uuid.uuid4().hex[:8]}", ["admin"])
    app = create_app(services, settings, tokens)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test", timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            yield Observed(http, services, token)
    finally:
        if nats_url is not None:
            with contextlib.suppress(Exception):  # the test may have stopped that server
                await asyncio.wait_for(nc.close(), 5)


def version_history_worker(system: System) -> ProjectionWorker:
    assert system.settings.database_url
    leases = PartitionLeases(system.settings.database_url, "version_history",
                             system.settings.partitions)
    return ProjectionWorker(VersionHistoryProjection(system.pool), system.js, system.settings,
                            leases, ParkingLot(system.pool), rebalance_interval=0.2)
