"""Content against a JSON Schema, and submitted schemas themselves: pure, no fixtures."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ValidationError
from core.schema_validation import MAX_VIOLATIONS, Violation, check_schema, violations

LINE = {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer",
                                                                           "minimum": 1}},
        "required": ["sku", "qty"], "additionalProperties": False}
ORDER = {"type": "object", "required": ["id", "lines"], "additionalProperties": False,
         "properties": {"id": {"type": "string"}, "lines": {"type": "array", "items": LINE},
                        "customer": {"type": "object",
                                     "properties": {"email": {"type": "string",
                                                              "maxLength": 10}}}}}


def test_every_violation_has_the_pointer_of_its_value() -> None:
    content = {"id": 7, "extra": True, "customer": {"email": "a-very-long@example.com"},
               "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": "x"}, {"sku": "c", "qty": 2},
                         {"qty": 1}, {"sku": "e", "qty": 0, "note": "?"}]}
    assert [v.pointer for v in violations(ORDER, content)] == [
        "/customer/email", "/extra", "/id", "/lines/1/qty", "/lines/3", "/lines/4/note",
        "/lines/4/qty"]
    found = {str(v) for v in violations(ORDER, content)}
    assert "/lines/1/qty: 'x' is not of type 'integer'" in found
    assert "/lines/3: 'sku' is a required property" in found
    assert "/lines/4/note: not allowed: additionalProperties is false" in found


def test_conforming_content_has_no_violations() -> None:
    assert violations(ORDER, {"id": "o1", "lines": [{"sku": "a", "qty": 3}]}) == []


def test_array_indexes_sort_numerically_and_the_list_is_capped() -> None:
    rows = {"type": "array", "items": {"type": "integer"}}
    found = violations(rows, ["x"] * 250)
    assert len(found) == MAX_VIOLATIONS
    assert [v.pointer for v in found[:3]] == ["/0", "/1", "/2"]
    assert found[10] == Violation("/10", "'x' is not of type 'integer'")
    assert violations(rows, ["x"] * 250) == found  # the same answer every time


def test_a_violation_at_the_root_and_long_values_are_shortened() -> None:
    (found,) = violations({"type": "array"}, {"k": "v" * 1000})
    assert found.pointer == ""
    assert str(found).startswith("(root): {'k': 'vvv")
    assert len(found.message) <= 200


@pytest.mark.parametrize(("schema", "says"), [
    ({"type": "strin"}, "not a valid JSON Schema (Draft 2020-12) at /type"),
    ({"properties": {"a": {"minLength": -1}}}, "at /properties/a/minLength"),
    ([{"type": "string"}], "a schema must be a JSON object"),
    ({"$schema": "http://json-schema.org/draft-07/schema#"}, "only JSON Schema Draft 2020-12"),
    ({"$ref": "https://example.com/order.json"}, "does not resolve"),
    ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "at /properties/a does not resolve"),
    ({"properties": {"a": {"$id": "https://example.com/a"}}}, "$id is allowed at the root"),
])
def test_an_invalid_schema_is_refused_with_the_reason(schema: Any, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_schema(schema)
    assert says in refused.value.message


def test_a_valid_schema_passes() -> None:
    check_schema({"$schema": "https://json-schema.org/draft/2020-12/schema", **ORDER,
                  "$defs": {"line": LINE}, "properties": {"first": {"$ref": "#/$defs/line"}}})


def test_remote_refs_are_never_fetched() -> None:
    """Validation resolves only inside the schema (a stored schema predating check_schema)."""
    with pytest.raises(ValidationError, match="unresolvable"):
        violations({"$ref": "http://127.0.0.1:9/never.json"}, {})
