"""Schema compatibility, pure: each mode with Confluent Schema Registry's meaning.

Directions, once: BACKWARD means the NEW schema reads data written with the OLD one (every
instance of old is an instance of new; consumers upgrade first). FORWARD means the OLD schema
reads data written with the NEW one (new ⊆ old; producers upgrade first). FULL is both.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.errors import ValidationError
from core.schema_compat import Compatibility, Reason, check, classify, is_subset
from core.schema_compat import parse_compatibility as parse_mode
from core.schema_subset import CONSTRAINTS


def order(**changes: Any) -> dict[str, Any]:
    """An order record with a closed content model (additionalProperties: false)."""
    properties = {"id": {"type": "string"}, "amount": {"type": "number"}}
    properties.update({k: v for k, v in changes.pop("properties", {}).items() if v is not None})
    for name in changes.pop("drop", ()):
        del properties[name]
    return {"type": "object", "properties": properties, "required": ["id"],
            "additionalProperties": False, **changes}


V1 = order()
WITH_NOTE = order(properties={"note": {"type": "string"}})
WITH_CUSTOMER = order(properties={"customer_id": {"type": "string"}},
                      required=["id", "customer_id"])
WITHOUT_AMOUNT = order(drop=["amount"])
AMOUNT_AS_STRING = order(properties={"amount": {"type": "string"}})


def messages(reasons: list[Reason]) -> list[str]:
    return [str(r) for r in reasons]


def test_backward_accepts_an_optional_field_added_to_a_closed_model() -> None:
    """Old data never has "note" (the old model is closed), so the new schema reads it."""
    assert check("BACKWARD", WITH_NOTE, [V1]) == []


def test_backward_refuses_a_new_required_field() -> None:
    """Old data lacks "customer_id", which the new schema requires: new cannot read old."""
    assert messages(check("BACKWARD", WITH_CUSTOMER, [V1])) == [
        "/required: 'customer_id' became required [backward, version 1]"]


def test_forward_accepts_an_optional_field_removed_from_a_closed_model() -> None:
    """New data never has "amount" (the new model is closed), and "amount" was optional in
    the old schema, so the old schema reads new data."""
    assert check("FORWARD", WITHOUT_AMOUNT, [V1]) == []


def test_forward_refuses_an_optional_field_added_to_a_closed_model() -> None:
    """New data may carry "note"; the old closed model refuses it: old cannot read new. (The
    same change BACKWARD accepts: the two directions are different questions.)"""
    assert messages(check("FORWARD", WITH_NOTE, [V1])) == [
        "/properties/note: added while the previous schema's additionalProperties is false"
        " [forward, version 1]"]


def test_backward_refuses_removing_an_optional_field_from_a_closed_model() -> None:
    """Old data may carry "amount"; the new closed model refuses it."""
    assert messages(check("BACKWARD", WITHOUT_AMOUNT, [V1])) == [
        "/properties/amount: removed while additionalProperties is false [backward, version 1]"]


PARTLY_OPEN = {"type": "object", "properties": {"id": {"type": "string"}},
               "additionalProperties": {"type": "string"}}


def test_full_accepts_a_field_covered_by_a_partly_open_model() -> None:
    """Any extra member was already a string in both schemas, so naming "note" as a string
    changes no instance's validity: readable in both directions."""
    new = {**PARTLY_OPEN, "properties": {**PARTLY_OPEN["properties"],
                                         "note": {"type": "string", "description": "free text"}}}
    assert check("FULL", new, [PARTLY_OPEN]) == []


def test_full_refuses_widening_a_type() -> None:
    """integer -> number: the new schema reads every old integer (BACKWARD holds) but old
    readers choke on a new 1.5 (FORWARD fails), so FULL fails in the forward direction."""
    old = order(properties={"amount": {"type": "integer"}})
    assert check("BACKWARD", V1, [old]) == []
    assert messages(check("FULL", V1, [old])) == [
        "/properties/amount: type changed from integer to number [forward, version 1]"]


def test_none_accepts_anything() -> None:
    assert check("NONE", AMOUNT_AS_STRING, [V1]) == []
    assert check(Compatibility.NONE, {"type": "null"}, [V1, WITH_NOTE]) == []


def test_type_change_is_refused_both_ways_with_its_pointer() -> None:
    assert messages(check("FULL", AMOUNT_AS_STRING, [V1])) == [
        "/properties/amount: type changed from number to string [backward, version 1]",
        "/properties/amount: type changed from number to string [forward, version 1]"]


# Transitive modes. Inclusion is itself transitive, so a history built under one checked
# mode cannot conflict with an older version only; such histories arise when the mode was
# NONE (or looser) earlier. Here v1 -> v2 changed the type of amount under NONE.
V2 = AMOUNT_AS_STRING


def test_backward_transitive_refuses_what_only_an_older_version_breaks() -> None:
    """v3 adds an optional field to v2: BACKWARD (v2 only) accepts, but data written with
    v1 has a numeric amount, which v3 cannot read."""
    v3 = order(properties={"amount": {"type": "string"}, "note": {"type": "string"}})
    assert check("BACKWARD", v3, [V1, V2]) == []
    assert messages(check("BACKWARD_TRANSITIVE", v3, [V1, V2])) == [
        "/properties/amount: type changed from number to string [backward, version 1]"]


def test_backward_transitive_accepts_what_every_version_allows() -> None:
    assert check("BACKWARD_TRANSITIVE", order(properties={"note": {"type": "string"}}),
                 [V1, order()]) == []


def test_forward_transitive_refuses_what_only_an_older_version_breaks() -> None:
    """v3 narrows v2's amount to short strings: v2 reads all of v3's data (FORWARD holds),
    v1 does not (v3 writes strings where v1 reads numbers)."""
    v3 = order(properties={"amount": {"type": "string", "maxLength": 12}})
    assert check("FORWARD", v3, [V1, V2]) == []
    assert messages(check("FORWARD_TRANSITIVE", v3, [V1, V2])) == [
        "/properties/amount: type changed from number to string [forward, version 1]"]


def test_forward_transitive_accepts_what_every_version_reads() -> None:
    assert check("FORWARD_TRANSITIVE", WITHOUT_AMOUNT, [V1, V1]) == []


def test_full_transitive_refuses_what_only_an_older_version_breaks() -> None:
    """v3 only documents v2 (FULL with v2) but is still a string where v1 had a number."""
    v3 = {**V2, "description": "an order"}
    assert check("FULL", v3, [V1, V2]) == []
    assert {(r.direction, r.version) for r in check("FULL_TRANSITIVE", v3, [V1, V2])} == {
        ("backward", 1), ("forward", 1)}


def test_full_transitive_accepts_documentation_only_changes() -> None:
    assert check("FULL_TRANSITIVE", {**V1, "title": "Order"}, [V1, {**V1, "title": "O"}]) == []


def test_adding_a_typed_field_to_an_open_model_is_not_backward() -> None:
    """With additionalProperties absent (open), old data may hold "note": 5; a new schema
    that types "note" as a string refuses it. Confluent refuses it too (an open content
    model); closing the model or a partly open one (see above) is how to evolve."""
    old = {"type": "object", "properties": {"id": {"type": "string"}}}
    new = {"type": "object", "properties": {"id": {"type": "string"},
                                            "note": {"type": "string"}}}
    assert messages(is_subset(old, new)) == [
        "/properties/note: added, but the previous schema's additionalProperties accepted"
        " any value for it"]
    assert is_subset(new, old) == []  # the other way round is FORWARD: fine


def test_reasons_point_into_nested_objects_and_arrays() -> None:
    def with_sku(sku: dict[str, Any]) -> dict[str, Any]:
        line = {"type": "object", "properties": {"sku": sku}, "required": ["sku"]}
        return order(properties={"lines": {"type": "array", "items": line}})
    reasons = is_subset(with_sku({"type": "string"}), with_sku({"type": "string",
                                                                "maxLength": 8}))
    assert [(r.pointer, r.message) for r in reasons] == [
        ("/properties/lines/items/properties/sku", "maxLength changed from absent to 8")]


def test_enum_values_are_checked_one_by_one() -> None:
    old = {"enum": ["EUR", "USD"]}
    assert is_subset(old, {"enum": ["USD", "EUR", "JPY"]}) == []
    assert is_subset(old, {"type": "string", "maxLength": 3}) == []
    assert messages(check("FORWARD", {"enum": ["EUR", "USD", "JPY"]}, [old])) == [
        '/enum: value "JPY" is newly allowed, but the previous schema refuses it'
        " [forward, version 1]"]
    assert messages(is_subset(old, {"const": "EUR"})) == ['/enum: value "USD" is no longer allowed']
    # true and 1 are equal in Python, not in JSON Schema
    assert messages(is_subset({"const": 1}, {"const": True})) == [
        "/const: value 1 is no longer allowed"]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ({"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 20}, []),
    ({"type": "string", "maxLength": 20}, {"type": "string", "maxLength": 10},
     ["(root): maxLength changed from 20 to 10"]),
    ({"type": "string"}, {"type": "string", "pattern": "^a"},
     ['(root): pattern changed from absent to "^a"']),
    ({"type": "integer", "minimum": 1}, {"type": "number", "exclusiveMinimum": 0}, []),
    ({"type": "number", "minimum": 0}, {"type": "number", "exclusiveMinimum": 0},
     ["(root): lower bound changed from >= 0 to > 0"]),
    ({"type": "number", "maximum": 5}, {"type": "number"}, []),
    ({"type": "number"}, {"type": "number", "exclusiveMaximum": 5},
     ["(root): upper bound changed from absent to < 5"]),
    ({"type": "number", "multipleOf": 0.2}, {"type": "number", "multipleOf": 0.1}, []),
    ({"type": "number", "multipleOf": 0.3}, {"type": "number", "multipleOf": 0.2},
     ["(root): multipleOf changed from 0.3 to 0.2"]),
    ({"type": "array", "items": {"type": "integer"}}, {"type": "array"}, []),
    ({"type": "array"}, {"type": "array", "minItems": 1},
     ["(root): minItems changed from absent to 1"]),
    ({"type": ["string", "null"]}, {"type": "string"},
     ['(root): type changed from ["string", "null"] to string']),
    ({"type": "boolean"}, {"enum": [True, False]}, []),
    ({}, {"type": "object"}, ["(root): type changed from any to object"]),
    ({"type": "object"}, True, []),
    (False, {"type": "string"}, []),
])
def test_structural_rules(old: Any, new: Any, expected: list[str]) -> None:
    assert messages(is_subset(old, new)) == expected


def test_refs_and_combinators_count_only_when_unchanged() -> None:
    def doc(address: dict[str, Any], any_of: list[Any]) -> dict[str, Any]:
        return {"$defs": {"address": address}, "type": "object",
                "properties": {"home": {"$ref": "#/$defs/address"}, "tag": {"anyOf": any_of}}}
    street = {"type": "object", "properties": {"street": {"type": "string"}}}
    tags = [{"type": "string"}, {"type": "integer"}]
    assert is_subset(doc(street, tags), doc(street, tags)) == []
    assert is_subset(doc(street, tags), {**doc(street, tags), "description": "x"}) == []
    changed = {**street, "required": ["street"]}
    assert messages(is_subset(doc(street, tags), doc(changed, tags))) == [
        "/properties/home: $ref refers to a definition that changed; a $ref counts only when"
        " its target is unchanged"]
    assert messages(is_subset(doc(street, tags), doc(street, tags[:1]))) == [
        "/properties/tag: anyOf changed; anyOf is compared for equality only"]


def test_every_jsonschema_keyword_is_classified() -> None:
    """A keyword the checker took for an annotation would be ignored: unsound."""
    assert set(Draft202012Validator.VALIDATORS) - {"format"} <= CONSTRAINTS


def test_classify_derives_the_semver_bump() -> None:
    assert classify(V1, dict(reversed(list(V1.items())))) == "PATCH"  # key order is no change
    assert classify(V1, WITH_NOTE) == "MINOR"  # backward compatible, additive
    assert classify(V1, {**V1, "description": "orders"}) == "MINOR"
    assert classify(V1, WITH_CUSTOMER) == "MAJOR"
    assert classify(V1, AMOUNT_AS_STRING) == "MAJOR"


def test_modes_parse_case_insensitively() -> None:
    assert parse_mode("full_transitive") is Compatibility.FULL_TRANSITIVE
    assert Compatibility.FULL_TRANSITIVE.transitive
    assert Compatibility.FULL.directions == ("backward", "forward")
    with pytest.raises(ValidationError, match="unknown compatibility 'SIDEWAYS'"):
        check("SIDEWAYS", V1, [V1])


SCHEMAS: list[Any] = [
    True, False, {}, {"type": "string"}, {"type": "string", "maxLength": 2},
    {"type": "string", "minLength": 1}, {"type": "integer"}, {"type": "number"},
    {"type": "number", "minimum": 0}, {"type": "integer", "exclusiveMaximum": 3},
    {"type": ["string", "null"]}, {"enum": ["a", 1, None]}, {"const": "a"}, {"type": "boolean"},
    {"type": "array", "items": {"type": "integer"}}, {"type": "array", "maxItems": 1},
    {"type": "array", "uniqueItems": True}, V1, WITH_NOTE, WITH_CUSTOMER, WITHOUT_AMOUNT, V2,
    PARTLY_OPEN, {"type": "object", "properties": {"id": {"type": "string"}}},
    {"type": "object", "maxProperties": 1}, {"anyOf": [{"type": "string"}, {"type": "null"}]},
]
INSTANCES: list[Any] = [
    None, True, False, 0, 1, 2.5, -1, 3, "", "a", "abc", [], [1], [1, 1], ["x"], {},
    {"id": "1"}, {"id": "1", "amount": 2}, {"id": "1", "amount": "2"}, {"id": "1", "note": "n"},
    {"id": "1", "note": 5}, {"id": "1", "customer_id": "c"}, {"amount": 1}, {"id": 1},
]


def test_no_reasons_means_no_counterexample() -> None:
    """Soundness on a corpus: whenever is_subset finds nothing, no instance valid under the
    first schema is refused by the second."""
    valid = {i: {j for j, x in enumerate(INSTANCES) if Draft202012Validator(s).is_valid(x)}
             for i, s in enumerate(SCHEMAS)}
    for (i, a), (j, b) in itertools.product(enumerate(SCHEMAS), repeat=2):
        if not is_subset(a, b):
            assert valid[i] <= valid[j], (a, b)
