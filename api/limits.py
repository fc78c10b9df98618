"""Limits against abuse: request body size (ASGI middleware) and GraphQL document shape;
and the parse and validation of each distinct GraphQL document done once, not per request."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from graphql.validation import ASTValidationRule
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.extensions.base_extension import SchemaExtension
from strawberry.schema.schema import validate_document

# The messages graphql-core and strawberry's limiters produce; they carry no code of their
# own, so these mark them as LIMIT errors.
LIMIT_MESSAGES = ("exceeds maximum operation depth", "aliases found. Allowed",
                  "Document contains more than")

# Clients send the same few documents again and again, with the data in variables. Longer
# documents (data inlined as literals) are parsed per request: a cache of them would hold
# megabytes per entry and rarely be hit.
MAX_CACHED_QUERY_CHARS = 16 * 1024
CACHED_DOCUMENTS = 512


def graphql_limits(*, max_depth: int, max_aliases: int, max_tokens: int
                   ) -> list[Callable[[], SchemaExtension]]:
    """A factory of the per-request extension that enforces the document limits (strawberry
    builds fresh extensions for each request)."""
    # strawberry's limiters make a new rule class per instance, so per request: built once
    # here, the rules are the same objects every time, which the validation cache needs.
    rules = (*QueryDepthLimiter(max_depth=max_depth).validation_rules,
             *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules)
    documents = DocumentCache()
    return [lambda: DocumentLimits(rules, max_tokens, documents)]


class DocumentCache:
    """Parsed documents by text and token limit, and validation errors by document and rules
    (least recently used, bounded). A cached document is shared by the requests that send the
    same text; nothing in parsing, validation or execution changes a document."""

    def __init__(self, size: int = CACHED_DOCUMENTS) -> None:
        self.parse = lru_cache(maxsize=size)(_parse)
        self.validate = lru_cache(maxsize=size)(_validate)


def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def _validate(schema: GraphQLSchema, document: DocumentNode,
              rules: tuple[type[ASTValidationRule], ...]) -> list[GraphQLError]:
    return validate_document(schema, document, rules)


class DocumentLimits(SchemaExtension):
    """Depth, alias and token limits on GraphQL documents (strawberry's QueryDepthLimiter,
    MaxAliasesLimiter and MaxTokensLimiter in one extension), parsing and validating each
    distinct document once."""

    def __init__(self, rules: Sequence[type[ASTValidationRule]], max_tokens: int,
                 documents: DocumentCache) -> None:
        self.rules = tuple(rules)
        self.max_tokens = max_tokens
        self.documents = documents
        self.cached = False

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.max_tokens
        context.validation_rules = context.validation_rules + self.rules
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        if query is not None and len(query) <= MAX_CACHED_QUERY_CHARS:
            try:
                context.graphql_document = self.documents.parse(query, self.max_tokens)
                self.cached = True
            except GraphQLError:
                pass  # not cached: strawberry parses it again and reports the error its way
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        # Only cached documents: keying on any other would keep it alive in the cache.
        if self.cached and context.graphql_document is not None and context.validation_rules:
            # A list of its own: the cached one must not change through a request's result.
            context.pre_execution_errors = list(self.documents.validate(
                context.schema._schema, context.graphql_document, context.validation_rules))
        yield


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
