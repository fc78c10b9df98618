"""Limits against abuse: request body size (ASGI middleware) and GraphQL document shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.extensions.base_extension import SchemaExtension

# The messages graphql-core and strawberry's limiters produce; they carry no code of their
# own, so these mark them as LIMIT errors.
LIMIT_MESSAGES = ("exceeds maximum operation depth", "aliases found. Allowed",
                  "Document contains more than")


def graphql_limits(*, max_depth: int, max_aliases: int, max_tokens: int
                   ) -> list[Callable[[], SchemaExtension]]:
    """Factories: strawberry builds fresh extensions for each request."""
    return [lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
            lambda: MaxTokensLimiter(max_token_count=max_tokens)]


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413 before the app sees them, whether
    the client announced the size (Content-Length) or streams it chunked."""

    def __init__(self, app: ASGIApp, max_bytes: int, *,
                 streaming_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streaming_paths = streaming_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.streaming_paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload: dict[str, Any] = {"error": {"code": "LIMIT", "message":
                                             f"request body over {self.max_bytes} bytes"}}
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
