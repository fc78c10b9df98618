"""The Starlette application: GraphQL at /graphql (GraphiQL in a browser), read-only SQL at
/sql, and /healthz."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from api.auth import AUTH_CACHE_SECONDS, TokenAuth
from api.bulk import handle_bulk
from api.context import Context, Services
from api.dashboard import dashboard_routes
from api.dashboard_templates import STATIC_DIR as DASHBOARD_STATIC_DIR
from api.dashboard_templates import STATIC_URL as DASHBOARD_STATIC_URL
from api.graphiql import STATIC_DIR, STATIC_URL, graphiql_html
from api.health import Readiness, readyz_endpoint
from api.limits import BodyLimit
from api.metrics import exposition, metrics_source
from api.request_log import RequestLog
from api.schema import make_schema
from api.websocket import (
    CONNECTION_INIT_WAIT,
    MAX_OPERATIONS_PER_CONNECTION,
    CheckedTransportWSHandler,
)
from core.auth import Scope, TokenService
from core.errors import (
    ArtifactlogError,
    Forbidden,
    LimitExceeded,
    Unavailable,
    ValidationError,
)
from core.settings import Settings

MAX_SQL_BODY = 256 * 1024


class ArtifactlogGraphQL(GraphQL):
    graphql_transport_ws_handler_class = CheckedTransportWSHandler

    def __init__(self, services: Services, settings: Settings, tokens: TokenService) -> None:
        super().__init__(make_schema(settings), graphql_ide="graphiql",
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
                         connection_init_wait_timeout=CONNECTION_INIT_WAIT,
                         max_subscriptions_per_connection=MAX_OPERATIONS_PER_CONNECTION)
        self.services = services
        self.tokens = tokens

    def decode_json(self, data: str | bytes) -> object:
        """strawberry answers 400 only for JSONDecodeError; bodies that are not UTF-8,
        integers past Python's digit limit and absurd nesting are bad requests too."""
        try:
            return super().decode_json(data)
        except json.JSONDecodeError:
            raise
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise json.JSONDecodeError(f"not valid JSON: {exc}", "", 0) from exc

    async def render_graphql_ide(self, request: Request) -> Response:
        """strawberry's page with its assets served by us: it must load without internet."""
        return HTMLResponse(graphiql_html())

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return Context(services=self.services,
                       principal=getattr(request.state, "principal", None))

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Websockets authenticate in connection_init: {"token": "al_..."} (browsers cannot
        set headers on a websocket)."""
        params = context.connection_params or {}
        token = params.get("token") or str(params.get("Authorization", "")).removeprefix(
            "Bearer ").strip() or None
        try:
            context.principal = await self.tokens.authenticate(
                token if isinstance(token, str) else None)
        except ArtifactlogError as exc:
            raise ConnectionRejectionError({"code": exc.code, "message": exc.message}) from exc
        return UNSET


def error_response(error: ArtifactlogError) -> JSONResponse:
    return JSONResponse({"error": {"code": error.code, "message": error.message}},
                        status_code=error.http_status)


def create_app(services: Services, settings: Settings, tokens: TokenService) -> ASGIApp:
    """The HTTP application around the application services; every request but the public
    ones carries an API token."""
    graphql = ArtifactlogGraphQL(services, settings, tokens)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    shared_metrics = metrics_source(services, settings)

    async def metrics(request: Request) -> Response:
        return Response(await exposition(shared_metrics), media_type=CONTENT_TYPE_LATEST)

    async def sql(request: Request) -> JSONResponse:
        """POST a query as text/plain, or as JSON {"sql": "..."}; answers columns, types, rows."""
        try:
            context = Context(services=services,
                              principal=getattr(request.state, "principal", None))
            context.require(Scope.READ)
            if context.principal and context.principal.namespaces is not None:
                raise Forbidden("a token limited to namespaces cannot run SQL over all of them")
            query = await sql_from(request)
            if services.analytics is None:
                raise Unavailable("this process does not serve analytics")
            result = await services.analytics.run(query)
        except ArtifactlogError as exc:
            return error_response(exc)
        except psycopg.OperationalError:
            return error_response(Unavailable("the database is unavailable; retry"))
        return JSONResponse({"columns": result.columns, "types": result.types,
                             "rows": result.rows})

    async def bulk(request: Request) -> Response:
        """NDJSON, one IngestInput per line; each line answered on its own (api/bulk.py)."""
        context = Context(services=services,
                          principal=getattr(request.state, "principal", None))
        try:
            principal = context.require(Scope.WRITE)
        except ArtifactlogError as exc:
            return error_response(exc)
        try:
            return await handle_bulk(
                request, services.artifacts, actor=principal.name,
                check=lambda cmd: principal.require(Scope.WRITE, cmd.namespace))
        except psycopg.OperationalError:
            return error_response(Unavailable("the database is unavailable; retry (lines "
                                              "with idempotency keys are safe to resend)"))

    app = Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz_endpoint(Readiness(
            services.status.pool, services.status.js, services.analytics, settings))),
        Route("/metrics", metrics),
        Route("/ingest/bulk", bulk, methods=["POST"]),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/sql", sql, methods=["POST"]),
        Mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="graphiql-static"),
        Mount(DASHBOARD_STATIC_URL, StaticFiles(directory=DASHBOARD_STATIC_DIR),
              name="dashboard-static"),
        *dashboard_routes(services, tokens),
    ])
    # /ingest/bulk streams its body with limits of its own; buffering it would defeat that.
    return RequestLog(BodyLimit(TokenAuth(app, tokens, cache_seconds=AUTH_CACHE_SECONDS),
                                settings.max_body_bytes,
                                streaming_paths=("/ingest/bulk",)))


async def sql_from(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_SQL_BODY:
        raise LimitExceeded(f"the request body is larger than {MAX_SQL_BODY} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("the request body is not UTF-8") from exc
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("sql"), str):
            raise ValidationError('send {"sql": "SELECT ..."}')
        return str(payload["sql"])
    return text
