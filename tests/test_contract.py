"""The GraphQL schema keeps every name of the shared contract with its meaning, and the
exported SDL (api/schema.graphql) is the schema the server runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    is_enum_type,
    is_scalar_type,
)

from api.schema import schema

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "tests" / "contract.graphql"
SHARED = ROOT.parent / "shared" / "contract.graphql"


# The contract states the Relay convention in a comment; these are the types it implies.
CONNECTIONS = ("Artifact", "ArtifactVersion", "Event", "Change")
RELAY = "type PageInfo { hasNextPage: Boolean!  endCursor: String }\n" + "".join(
    f"type {node}Connection {{ edges: [{node}Edge!]!  pageInfo: PageInfo!  totalCount: Int! }}\n"
    f"type {node}Edge {{ node: {node}!  cursor: String! }}\n" for node in CONNECTIONS)


def contract() -> GraphQLSchema:
    return build_schema(CONTRACT.read_text() + RELAY)


def ours() -> GraphQLSchema:
    return schema._schema


def test_the_vendored_contract_is_the_shared_one() -> None:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not beside this checkout")
    assert SHARED.read_text() == CONTRACT.read_text(), "copy ../shared/contract.graphql here"


def contract_names() -> list[str]:
    return sorted(n for n in contract().type_map if not n.startswith("__"))


@pytest.mark.parametrize("name", contract_names())
def test_every_contract_type_exists_with_its_fields(name: str) -> None:
    wanted, have = contract().type_map[name], ours().type_map.get(name)
    assert have is not None, f"type {name} is missing"
    assert isinstance(have, type(wanted)), f"{name} is a {type(have).__name__}"
    if is_enum_type(wanted):
        assert set(wanted.values) <= set(have.values)  # type: ignore[attr-defined]
    if is_scalar_type(wanted):
        return
    if isinstance(wanted, GraphQLObjectType | GraphQLInputObjectType):
        for field_name, field in wanted.fields.items():
            mine = have.fields.get(field_name)  # type: ignore[union-attr]
            assert mine is not None, f"{name}.{field_name} is missing"
            assert str(mine.type) == str(field.type), f"{name}.{field_name}: {mine.type}"
            for arg_name, arg in getattr(field, "args", {}).items():
                assert arg_name in mine.args, f"{name}.{field_name}({arg_name}) is missing"
                assert str(mine.args[arg_name].type) == str(arg.type), (
                    f"{name}.{field_name}({arg_name}): {mine.args[arg_name].type}")


def test_exported_schema_has_not_drifted() -> None:
    exported = (ROOT / "api" / "schema.graphql").read_text()
    assert exported == schema.as_str() + "\n", (
        "regenerate it: artifactlog schema > api/schema.graphql")
