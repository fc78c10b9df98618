"""GraphQL documents are parsed and validated once per distinct text, and the limits still
hold for every request that sends a cached document."""

from __future__ import annotations

import strawberry

from api.limits import MAX_CACHED_QUERY_CHARS, DocumentLimits, graphql_limits


@strawberry.type
class Node:
    name: str = "n"

    @strawberry.field
    def child(self) -> Node:
        return Node()


@strawberry.type
class Query:
    @strawberry.field
    def node(self) -> Node:
        return Node()


def make_schema() -> tuple[strawberry.Schema, DocumentLimits]:
    factories = graphql_limits(max_depth=3, max_aliases=2, max_tokens=200)
    schema = strawberry.Schema(query=Query, extensions=factories)
    extension = factories[0]()
    assert isinstance(extension, DocumentLimits)
    return schema, extension


def test_a_document_sent_again_is_parsed_and_validated_once() -> None:
    schema, extension = make_schema()
    for _ in range(3):
        assert schema.execute_sync("{ node { child { name } } }").data == {
            "node": {"child": {"name": "n"}}}
    assert extension.documents.parse.cache_info().misses == 1
    assert extension.documents.parse.cache_info().hits == 2
    assert extension.documents.validate.cache_info().misses == 1
    assert extension.documents.validate.cache_info().hits == 2


def test_limits_refuse_a_cached_document_every_time() -> None:
    schema, _ = make_schema()
    deep = "{ node { child { child { child { name } } } } }"
    aliased = "{ a: node { name } b: node { name } c: node { name } }"
    for document, message in ((deep, "exceeds maximum operation depth"),
                              (aliased, "aliases found. Allowed")):
        for _ in range(2):
            result = schema.execute_sync(document)
            assert result.errors
            assert message in result.errors[0].message


def test_token_limit_and_syntax_errors_are_reported_not_cached() -> None:
    schema, extension = make_schema()
    for document in ("{ node { " + "name " * 300 + "} }", "{ node { name "):
        for _ in range(2):
            result = schema.execute_sync(document)
            assert result.errors
            assert result.data is None
    assert extension.documents.parse.cache_info().currsize == 0


def test_long_documents_are_not_kept() -> None:
    schema, extension = make_schema()
    long = "{ node { name } }" + " " * MAX_CACHED_QUERY_CHARS
    assert schema.execute_sync(long).data == {"node": {"name": "n"}}
    assert extension.documents.parse.cache_info().currsize == 0
    assert extension.documents.validate.cache_info().currsize == 0


def test_a_request_changing_its_errors_leaves_the_cache_alone() -> None:
    schema, _ = make_schema()
    first = schema.execute_sync("{ nope }")
    assert first.errors
    first.errors.clear()
    second = schema.execute_sync("{ nope }")
    assert second.errors
    assert "nope" in second.errors[0].message
