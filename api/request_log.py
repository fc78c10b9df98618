"""The outermost HTTP middleware: a correlation id per request, request metrics, and one
access log line per request.

The id comes from the request's ``X-Correlation-Id`` (when it is a sane token) or is made
here; it is bound for the request's duration (core.logs), so ingests store it in their
events' metadata, and it is returned in the response's ``X-Correlation-Id``.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import route_path
from api.metrics import LATENCY, REQUESTS, bind_ingest_path, reset_ingest_path
from core.logs import accepted_correlation_id, bind_correlation_id, reset_correlation_id

HEADER = "X-Correlation-Id"
CLIENT_HEADER = "X-Artifactlog-Client"  # the Python client says "python", the CLI "cli"
log = logging.getLogger("artifactlog.http")

# Metric labels must stay few: any other path is "other".
ROUTES = ("/graphql", "/ingest/bulk", "/sql", "/metrics", "/healthz", "/readyz")
INGEST_PATHS = {"/graphql": "graphql", "/ingest/bulk": "bulk_http"}
CLIENTS = {"cli": "cli", "python": "python_client"}


def route_label(path: str) -> str:
    if path in ROUTES:
        return path
    return "/static" if path.startswith("/static/") else "other"


def ingest_path(path: str, headers: Headers) -> str:
    """How ingests of this request count: by client when a known one says so, else by route."""
    return CLIENTS.get(headers.get(CLIENT_HEADER, ""), INGEST_PATHS.get(path, "other_http"))


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        correlation_id = accepted_correlation_id(headers.get(HEADER))
        path = route_path(scope)
        route, method = route_label(path), scope["method"]
        status = 500  # what the client sees if the app fails before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = correlation_id
            await send(message)

        id_token = bind_correlation_id(correlation_id)
        path_token = bind_ingest_path(ingest_path(path, headers))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            LATENCY.labels(route, method).observe(elapsed)
            REQUESTS.labels(route, method, str(status)).inc()
            log.info("%s %s %s %.1fms", method, route, status, elapsed * 1000,
                     extra={"method": method, "route": route, "status": status,
                            "duration_ms": round(elapsed * 1000, 2)})
            reset_ingest_path(path_token)
            reset_correlation_id(id_token)
