"""The Starlette application: GraphQL at /graphql (GraphiQL in a browser) and /healthz."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from api.context import Context, Services
from api.schema import schema


class ArtifactlogGraphQL(GraphQL):
    def __init__(self, services: Services) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.services = services

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return Context(services=self.services)


def create_app(services: Services) -> Starlette:
    """The HTTP application around the application services."""
    graphql = ArtifactlogGraphQL(services)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/graphql", graphql, methods=["GET", "POST"]),
    ])
