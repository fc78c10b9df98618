"""The plain-fields execution context answers exactly what strawberry's own does: the same
data and the same errors (messages, paths), for plain, preloaded and resolver fields."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.scalars import JSON
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from api.execution import PRELOADED, PlainFieldsExecutionContext


@strawberry.enum
class Color(Enum):
    RED = "RED"
    BLUE = "BLUE"


@strawberry.type
class Item:
    name: str
    number: int
    color: Color
    data: JSON | None
    maybe: str | None
    must: str  # some items break it: None
    big: int  # some items break it: past 32 bits
    children: list[Item]
    friend: Item | None
    preloaded: strawberry.Private[list[Item] | None] = None

    @strawberry.field(metadata={PRELOADED: "preloaded"})
    async def loaded(self) -> list[Item]:
        # The contract of PRELOADED: when the attribute is set, it is the field's value.
        return self.preloaded if self.preloaded is not None else [Item.make("lazy")]

    @strawberry.field
    async def slow(self) -> str:
        await asyncio.sleep(0)
        return self.name.upper()

    @strawberry.field
    def broken(self) -> str | None:
        raise ValueError("broken resolver")

    @classmethod
    def make(cls, name: str, **overrides: Any) -> Item:
        values: dict[str, Any] = {
            "name": name, "number": 1, "color": Color.RED, "data": {"k": [1]}, "maybe": None,
            "must": "ok", "big": 5, "children": [], "friend": None}
        return cls(**{**values, **overrides})


def items() -> list[Item]:
    child = Item.make("child", color=Color.BLUE)
    return [
        Item.make("a", children=[child, child], friend=child, preloaded=[child]),
        Item.make("b", must=None, preloaded=None),  # type: ignore[arg-type]
        Item.make("c", big=2**40, children=[Item.make("d", must=None)]),  # type: ignore[arg-type]
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return items()

    @strawberry.field
    def required(self) -> list[Item | None]:
        return items()


def run(document: str, context_class: type) -> tuple[Any, list[Any]]:
    schema = strawberry.Schema(query=Query, execution_context_class=context_class)
    result = asyncio.run(schema.execute(document))
    errors = sorted((e.formatted for e in result.errors or ()), key=str)
    return result.data, errors


@pytest.mark.parametrize("document", [
    "{ items { name number color data maybe slow loaded { name color } } }",
    "{ items { name children { name color children { name } } friend { name } } }",
    "{ items { alias: name name ...F } } fragment F on Item { number color }",
    "{ required { name must } }",
    "{ required { name big } }",
    "{ required { name children { must } } }",
    "{ items { name broken } }",
    "{ items { __typename name loaded { name } } }",
])
def test_same_answers_as_strawberry(document: str) -> None:
    assert run(document, PlainFieldsExecutionContext) == run(
        document, StrawberryGraphQLCoreExecutionContext)


def test_preloaded_values_are_used_and_the_resolver_runs_otherwise() -> None:
    data, errors = run("{ items { loaded { name } } }", PlainFieldsExecutionContext)
    assert not errors
    assert [i["loaded"] for i in data["items"]] == [
        [{"name": "child"}], [{"name": "lazy"}], [{"name": "lazy"}]]
