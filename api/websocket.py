"""GraphQL subscriptions over graphql-transport-ws: strawberry's handler, with every message's
shape checked before strawberry reads it.

strawberry indexes messages as it finds them, so a JSON array, a ``payload`` that is a string
or a ``query`` that is a number raises TypeError inside the ASGI app: the connection drops
with no close frame and the server logs a traceback. Here any message of the wrong shape gets
the protocol's answer to an invalid message, close code 4400 with a reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types.execution import ExecutionResult

from api.schema import _coded as coded_error

# A client sends connection_init right after connecting (graphql-ws waits 3 s by default);
# strawberry's one minute lets idle sockets pile up.
CONNECTION_INIT_WAIT = timedelta(seconds=3)
# Operations running at once on one connection (strawberry answers the next with an error).
MAX_OPERATIONS_PER_CONNECTION = 100


def shape_error(message: Any) -> str | None:
    """Why ``message`` is not a well-formed graphql-transport-ws message, or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be a JSON object with a string type"
    kind = message["type"]
    if kind in ("connection_init", "ping", "pong"):
        payload = message.get("payload")
        return None if payload is None or isinstance(payload, dict) else (
            f"the {kind} payload must be an object")
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return f"a {kind} message needs a string id"
    if kind == "subscribe":
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return "a subscribe payload must be an object with a string query"
        if not isinstance(payload.get("variables") or {}, dict):
            return "variables must be an object"
        if not isinstance(payload.get("operationName") or "", str):
            return "operationName must be a string"
    return None


class CheckedTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    async def handle_message(self, message: Any) -> None:
        error = shape_error(message)
        if error is not None:
            await self.handle_invalid_message(error)
            return
        await super().handle_message(message)

    async def _send_result_stream(self, operation: Any, result_source: Any) -> None:
        """Errors sent over the websocket carry ``extensions.code`` as over HTTP (the schema's
        ErrorCodes extension sees only the HTTP operations' results)."""
        async def coded() -> AsyncIterator[Any]:
            async for result in result_source:
                if isinstance(result, ExecutionResult) and result.errors:
                    result.errors = [coded_error(error) for error in result.errors]
                yield result
        await super()._send_result_stream(operation, coded())
