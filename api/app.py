"""The Starlette application: GraphQL at /graphql (GraphiQL in a browser) and /healthz."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from api.context import Context
from api.schema import schema
from core.services import ArtifactService


class ArtifactlogGraphQL(GraphQL):
    def __init__(self, service: ArtifactService) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.service = service

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return Context(service=self.service)


def create_app(service: ArtifactService) -> Starlette:
    """The HTTP application around one ArtifactService."""
    graphql = ArtifactlogGraphQL(service)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/graphql", graphql, methods=["GET", "POST"]),
    ])
