"""JSON Schema (Draft 2020-12) through the ``jsonschema`` library: is a submitted schema one we
accept, and where does content break it. Pure: no I/O (no remote ``$ref`` is ever fetched).

Only Draft 2020-12 is accepted, so that one meaning of every keyword holds for validation and
for the compatibility checker (``core.schema_compat``): in draft 7, for one, ``$ref`` hides its
siblings, where in 2020-12 it is one more constraint among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema import ValidationError as SchemaViolation
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

from core.diff import pointer
from core.errors import ValidationError

DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_VIOLATIONS = 100
MAX_MESSAGE = 200  # jsonschema quotes the offending value; a large one would flood the message
# An empty registry: every $ref resolves inside the schema itself. With none, jsonschema
# would fall back to fetching remote references over HTTP, a request the server would make
# on behalf of whoever registered the schema.
NO_REMOTE = Registry()

# Where Draft 2020-12 keeps subschemas: the walk below follows these and nothing else, so a
# property that happens to be named "$ref", or an enum value holding one, is not a reference.
ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
       "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


@dataclass(frozen=True)
class Violation:
    """One offending value of the content: its JSON pointer and what is wrong with it."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '(root)'}: {self.message}"


def check_schema(schema: Any) -> None:
    """Refuse (ValidationError) anything but a Draft 2020-12 schema whose $refs are local."""
    if not isinstance(schema, Mapping):
        raise ValidationError("a schema must be a JSON object")
    declared = schema.get("$schema", DIALECT)
    if not isinstance(declared, str) or declared.rstrip("#") != DIALECT:
        raise ValidationError(f"only JSON Schema Draft 2020-12 is supported ($schema {DIALECT}),"
                              f" not {declared!r}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = _pointer(exc.absolute_path)
        raise ValidationError(f"not a valid JSON Schema (Draft 2020-12) at {where or '(root)'}:"
                              f" {_short(exc.message)}", pointer=where) from None
    for where, sub in walk(schema):
        if where and "$id" in sub:
            # A nested $id moves the base of the refs under it; we resolve from the root only.
            raise ValidationError(f"$id is allowed at the root only, not at {where}",
                                  pointer=where)
        for ref in (sub.get(k) for k in ("$ref", "$dynamicRef")):
            if isinstance(ref, str) and resolve(schema, ref) is None:
                raise ValidationError(
                    f"$ref {ref!r} at {where or '(root)'} does not resolve: references must be"
                    " JSON pointers into this schema ('#/$defs/...')", pointer=where)


def violations(schema: Mapping[str, Any], content: Any, *, limit: int = MAX_VIOLATIONS
               ) -> list[Violation]:
    """Where ``content`` breaks ``schema``: at most ``limit``, ordered by pointer. Validation
    stops after ``limit`` errors, so a list of exactly ``limit`` may stand for more."""
    validator = Draft202012Validator(schema, registry=NO_REMOTE)
    found: list[Violation] = []
    try:
        for error in validator.iter_errors(content):
            found += _explain(error)
            if len(found) >= limit:
                break
    except Unresolvable as exc:  # check_schema refuses these; a stored schema predating it
        raise ValidationError(f"the schema has an unresolvable $ref: {exc}") from None
    return sorted(found[:limit], key=lambda v: (_sort_key(v.pointer), v.message))


def accepts(schema: Any, value: Any) -> bool | None:
    """Whether ``value`` is valid under a self-contained ``schema``; None if it has $refs
    (they would resolve against the document it came from, which is not at hand)."""
    if next(refs(schema), None) is not None:
        return None
    try:
        return bool(Draft202012Validator(schema, registry=NO_REMOTE).is_valid(value))
    except (SchemaError, Unresolvable):
        return None


def walk(schema: Any, where: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every subschema that is an object, with its JSON pointer, the root first."""
    if not isinstance(schema, Mapping):
        return
    yield where, schema
    for key in ONE:
        if key in schema:
            yield from walk(schema[key], pointer(where, key))
    for key in MANY:
        for i, sub in enumerate(schema.get(key) or ()):
            yield from walk(sub, pointer(pointer(where, key), i))
    for key in NAMED:
        subs = schema.get(key)
        for name, sub in (subs.items() if isinstance(subs, Mapping) else ()):
            yield from walk(sub, pointer(pointer(where, key), name))


def refs(schema: Any) -> Iterator[str]:
    """The $ref and $dynamicRef values anywhere in ``schema``."""
    for _, sub in walk(schema):
        for key in ("$ref", "$dynamicRef"):
            if isinstance(sub.get(key), str):
                yield sub[key]


def resolve(root: Any, ref: str) -> Any:
    """The target of a local JSON-pointer reference ('#', '#/...'), else None."""
    if ref != "#" and not ref.startswith("#/"):
        return None  # remote and anchor references are not supported
    node = root
    for token in ref[2:].split("/") if ref != "#" else ():
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node if isinstance(node, Mapping | bool) else None


def _explain(error: SchemaViolation) -> list[Violation]:
    where = _pointer(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False \
            and isinstance(error.instance, Mapping):
        # Point at each unexpected member, not at the object that holds it.
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        declared = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        extra = [k for k in error.instance
                 if k not in declared and not any(re.search(p, k) for p in patterns)]
        return [Violation(pointer(where, k), "not allowed: additionalProperties is false")
                for k in sorted(extra)]
    return [Violation(where, _short(error.message))]


def _pointer(path: Any) -> str:
    where = ""
    for token in path:
        where = pointer(where, token)
    return where


def _sort_key(where: str) -> tuple[tuple[int, int | str], ...]:
    # Array indexes in numeric order, so /rows/2 comes before /rows/10.
    tokens = where.split("/")[1:]
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in tokens)


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 1] + "…"
