"""Fixtures of the abuse tests: the real application in-process (as a server would run it: an
exception becomes a 500, never a test error), with a token, and optionally the read-only SQL
service over a ClickHouse database of its own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from api.app import create_app
from api.server import build_services
from core.analytics_sql import ReadOnlySql
from core.auth import TokenService
from core.clickhouse import ClickHouse
from core.eventlog_pg import PostgresEventStore
from core.jetstream import connect
from core.settings import Settings
from projections.analytics import AnalyticsProjection
from projections.version_history import VersionHistoryProjection
from tests.conftest import new_token


@contextlib.asynccontextmanager
async def app_client(store: PostgresEventStore, settings: Settings, *scopes: str,
                     namespaces: list[str] | None = None, chdb_path: Path | None = None,
                     token: str | None = None, sql_seconds: float = 5
                     ) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the in-process app with a fresh token of ``scopes`` (admin by
    default); with ``chdb_path``, /sql and GraphQL analytics answer over a new database."""
    assert settings.nats_url
    nc = await connect(settings.nats_url, name="abuse")
    clickhouse, database = None, f"a_{uuid.uuid4().hex[:12]}"
    try:
        analytics = None
        if chdb_path is not None:
            clickhouse = ClickHouse(f"chdb://{chdb_path}", database=database)
            await AnalyticsProjection(clickhouse, settings).setup()
            analytics = ReadOnlySql(ClickHouse(f"chdb://{chdb_path}", database=database),
                                    max_seconds=sql_seconds)
        services = build_services(store.pool, nc.jetstream(), settings,
                                  {"version_history": VersionHistoryProjection(store.pool)},
                                  analytics)
        app = create_app(services, settings, TokenService(store.pool))
        if token is None:
            token = await new_token(store, *(scopes or ("admin",)), namespaces=namespaces)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            yield client
        if analytics is not None:
            await analytics.clickhouse.close()
    finally:
        if clickhouse is not None:
            await clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
            await clickhouse.close()
        await nc.close()


def error_code(response: httpx.Response) -> str | None:
    """The code of a refusal: GraphQL's first error, or the HTTP error body's."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        if body.get("errors"):
            return str(body["errors"][0].get("extensions", {}).get("code"))
        if isinstance(body.get("error"), dict):
            return str(body["error"].get("code"))
    return None
