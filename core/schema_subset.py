"""The inclusion of JSON Schemas: every instance of ``a`` is an instance of ``b``. Pure.

Sound, not complete: no reasons proves the inclusion; a reason may be conservative. Structural
rules cover type (integer is a number), properties, required, additionalProperties, items,
enum/const (each value validated exactly), string lengths and pattern (equal or absent), numeric
bounds and multipleOf. ``$ref``, combinators and the other applicators count only when equal
(a ``$ref`` also needs the same target). Schemas are Draft 2020-12, where $ref is a conjunct.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from core.diff import pointer
from core.schema_validation import accepts, refs, resolve

ALL_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
STRUCTURAL = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "pattern", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minProperties",
    "maxProperties"})
# Self-contained conjuncts: an equal one on both sides constrains both alike, and one only
# on the reading side merely narrows it, so only the writer's side must match.
BY_EQUALITY = frozenset({
    "$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas",
    "dependentRequired", "propertyNames", "contains", "minContains", "maxContains"})
# These widen what additionalProperties / items exempt, so they must match on both sides.
SYMMETRIC = frozenset({"patternProperties", "prefixItems"})
# These depend on every sibling and subschema: only an identical schema is known to match.
WHOLE = frozenset({"unevaluatedProperties", "unevaluatedItems", "$dynamicRef"})
CONSTRAINTS = STRUCTURAL | BY_EQUALITY | SYMMETRIC | WHOLE  # anything else is an annotation


@dataclass(frozen=True)
class Reason:
    """Why an inclusion fails: ``pointer`` locates the change in the schema; ``message`` says
    what changed, old -> new. ``check`` adds the failed direction and the version compared."""

    pointer: str
    message: str
    direction: str | None = None  # "backward" | "forward"
    version: int | None = None

    def __str__(self) -> str:
        against = [x for x in (self.direction, self.version and f"version {self.version}") if x]
        suffix = f" [{', '.join(against)}]" if against else ""
        return f"{self.pointer or '(root)'}: {self.message}{suffix}"


@dataclass(frozen=True)
class _Ctx:
    root_a: Any
    root_b: Any
    a_is_new: bool  # messages always describe the change old -> new


def is_subset(a: Any, b: Any, *, a_is_new: bool = False) -> list[Reason]:
    """Why not every instance of ``a`` is an instance of ``b`` (empty: it is). Messages
    describe a change from the older schema, ``a`` unless ``a_is_new`` (a FORWARD check)."""
    return _subset(a, b, "", _Ctx(a, b, a_is_new))


def _subset(a: Any, b: Any, path: str, ctx: _Ctx) -> list[Reason]:
    if _universal(b) or a is False:
        return []
    if b is False or not isinstance(a, Mapping | bool) or not isinstance(b, Mapping):
        return [_changed(ctx, path, "schema", a, b)]
    a = {} if a is True else a
    if same_schema(a, b) and _refs_agree(b, ctx):
        return []
    values = _finite_values(a, b)
    if values is not None:  # a short list of instances: validate each one exactly
        return _values_within(a, b, values, path, ctx)
    whole = sorted(WHOLE & b.keys())
    if whole:
        return [Reason(path, f"{whole[0]} changed; schemas using it must stay identical")]
    reasons = _compared_for_equality(a, b, path, ctx)
    for kw in ("enum", "const"):
        if kw in b:
            reasons.append(_changed(ctx, f"{path}/{kw}", kw, a.get(kw), b[kw]))
    a_types, b_types = _types(a), _types(b)
    if not a_types <= b_types:
        reasons.append(_changed(ctx, path, "type", a.get("type"), b.get("type"), "any"))
    kept = a_types & b_types
    if "string" in kept:
        reasons += _range(a, b, "minLength", "maxLength", path, ctx)
        if "pattern" in b and a.get("pattern") != b["pattern"]:
            reasons.append(_changed(ctx, path, "pattern", a.get("pattern"), b["pattern"]))
    if kept & {"integer", "number"}:
        reasons += _numbers(a, b, path, ctx)
    if "object" in kept:
        reasons += _objects(a, b, path, ctx)
    if "array" in kept:
        reasons += _subset(a.get("items", True), b.get("items", True), f"{path}/items", ctx)
        reasons += _range(a, b, "minItems", "maxItems", path, ctx)
        if b.get("uniqueItems") is True and a.get("uniqueItems") is not True:
            reasons.append(_changed(ctx, path, "uniqueItems", a.get("uniqueItems"), True))
    return reasons


def _compared_for_equality(a: Mapping[str, Any], b: Mapping[str, Any], path: str, ctx: _Ctx
                           ) -> list[Reason]:
    reasons = []
    for kw in sorted(BY_EQUALITY & b.keys() | SYMMETRIC & (a.keys() | b.keys())):
        if not same_schema(a.get(kw), b.get(kw)):
            reasons.append(Reason(path, f"{kw} changed; {kw} is compared for equality only"))
        elif not _refs_agree({kw: b[kw]}, ctx):
            reasons.append(Reason(path, f"{kw} refers to a definition that changed; a $ref"
                                  " counts only when its target is unchanged"))
    return reasons


def _objects(a: Mapping[str, Any], b: Mapping[str, Any], path: str, ctx: _Ctx) -> list[Reason]:
    reasons = [Reason(f"{path}/required", f"{name!r} is no longer required" if ctx.a_is_new
                      else f"{name!r} became required")
               for name in sorted(set(b.get("required", ())) - set(a.get("required", ())))]
    a_props, b_props = a.get("properties", {}), b.get("properties", {})
    a_more, b_more = a.get("additionalProperties", True), b.get("additionalProperties", True)
    patterns = "patternProperties" in a or "patternProperties" in b
    for name in sorted(a_props.keys() | b_props.keys()):
        here = pointer(f"{path}/properties", name)
        if name in a_props and name in b_props:
            reasons += _subset(a_props[name], b_props[name], here, ctx)
        elif patterns:  # which pattern would cover it is not worked out: refuse
            reasons.append(Reason(here, "added or removed next to patternProperties"))
        elif name in a_props and b_more is False and a_props[name] is not False:
            reasons.append(Reason(here, "added while the previous schema's additionalProperties"
                                  " is false" if ctx.a_is_new
                                  else "removed while additionalProperties is false"))
        elif name in b_props and _universal(a_more) and not _universal(b_props[name]):
            reasons.append(Reason(here, "removed while the new schema's additionalProperties"
                                  " accepts any value for it" if ctx.a_is_new else
                                  "added, but the previous schema's additionalProperties"
                                  " accepted any value for it"))
        else:
            reasons += _subset(a_props.get(name, a_more), b_props.get(name, b_more), here, ctx)
    if b_more is False and a_more is not False:
        reasons.append(_changed(ctx, f"{path}/additionalProperties", "additionalProperties",
                                a.get("additionalProperties"), False))
    else:
        reasons += _subset(a_more, b_more, f"{path}/additionalProperties", ctx)
    return reasons + _range(a, b, "minProperties", "maxProperties", path, ctx)


def _numbers(a: Mapping[str, Any], b: Mapping[str, Any], path: str, ctx: _Ctx) -> list[Reason]:
    reasons = []
    # A bound is (value, exclusive); for lower bounds the larger key is the tighter one, for
    # upper bounds the smaller key (exclusive sorts first through `not exclusive`).
    for keys, tighter in ((("minimum", "exclusiveMinimum"), max), (("maximum",
                          "exclusiveMaximum"), min)):
        a_bound, b_bound = _bound(a, keys, tighter), _bound(b, keys, tighter)
        if b_bound is not None and (a_bound is None or tighter(a_bound, b_bound) != a_bound):
            which = "lower" if tighter is max else "upper"
            reasons.append(_changed(ctx, path, f"{which} bound", _show(a_bound, which),
                                    _show(b_bound, which)))
    if "multipleOf" in b:
        step = a.get("multipleOf")
        if step is None or (_fraction(step) / _fraction(b["multipleOf"])).denominator != 1:
            reasons.append(_changed(ctx, path, "multipleOf", step, b["multipleOf"]))
    return reasons


def _bound(s: Mapping[str, Any], keys: tuple[str, str], tighter: Any) -> tuple[Any, bool] | None:
    upper = tighter is min
    found = [(s[k], (k == keys[1]) != upper) for k in keys if k in s]
    return tighter(found) if found else None


def _show(bound: tuple[Any, bool] | None, which: str) -> str | None:
    if bound is None:
        return None
    exclusive = bound[1] if which == "lower" else not bound[1]
    return f"{'>' if which == 'lower' else '<'}{'' if exclusive else '='} {bound[0]}"


def _range(a: Mapping[str, Any], b: Mapping[str, Any], low: str, high: str, path: str,
           ctx: _Ctx) -> list[Reason]:
    reasons = []
    if a.get(low, 0) < b.get(low, 0):
        reasons.append(_changed(ctx, path, low, a.get(low), b[low]))
    if high in b and (high not in a or a[high] > b[high]):
        reasons.append(_changed(ctx, path, high, a.get(high), b[high]))
    return reasons


def _finite_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Any] | None:
    """Every instance ``a`` can have, when that is a short list: its enum or const, or null
    and booleans when ``b`` lists values (structurally a list never contains a type)."""
    if "const" in a:
        return [a["const"]]
    if "enum" in a:
        return list(a["enum"])
    types = _types(a)
    if types <= {"null", "boolean"} and ("enum" in b or "const" in b):
        return [v for t, v in (("null", None), ("boolean", False), ("boolean", True))
                if t in types]
    return None


def _values_within(a: Mapping[str, Any], b: Mapping[str, Any], values: list[Any], path: str,
                   ctx: _Ctx) -> list[Reason]:
    keyword = next((k for k in ("const", "enum") if k in a), None)
    where = f"{path}/{keyword}" if keyword else path
    reasons = []
    for value in values:
        if accepts(a, value) is False:
            continue  # listed but refused by a's other keywords: not an instance of a
        accepted, shown = accepts(b, value), json.dumps(value)
        if accepted is None:
            reasons.append(Reason(where, f"value {shown} cannot be checked against a $ref"))
        elif not accepted:
            reasons.append(Reason(where, f"value {shown} is newly allowed, but the previous "
                                  "schema refuses it" if ctx.a_is_new
                                  else f"value {shown} is no longer allowed"))
    return reasons


def _types(s: Mapping[str, Any]) -> frozenset[str]:
    declared = s.get("type")
    if declared is None:
        return ALL_TYPES
    types = frozenset([declared] if isinstance(declared, str) else declared)
    return types | {"integer"} if "number" in types else types  # every integer is a number


def _universal(s: Any) -> bool:
    return s is True or (isinstance(s, Mapping) and not (CONSTRAINTS & s.keys()))


def _refs_agree(value: Any, ctx: _Ctx) -> bool:
    """Every $ref reachable from ``value`` means the same in both documents: local, and
    pointing at identical targets (transitively), so an equal $ref is an equal constraint."""
    pending, seen = list(refs(value)), set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        targets = resolve(ctx.root_a, ref), resolve(ctx.root_b, ref)
        if targets[0] is None or not same_schema(*targets):
            return False
        pending += refs(targets[0])
    return True


def same_schema(a: Any, b: Any) -> bool:
    # Canonical text, not ==: in Python True == 1, in JSON Schema true and 1 differ.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _fraction(x: Any) -> Fraction:
    return Fraction(str(x))  # the decimal the schema wrote, not the binary float


def _changed(ctx: _Ctx, path: str, what: str, a_value: Any, b_value: Any,
             absent: str = "absent") -> Reason:
    old, new = (b_value, a_value) if ctx.a_is_new else (a_value, b_value)
    raw = what != "pattern"  # a pattern keeps its quotes, so its spaces and ends show
    shown = [absent if v is None else v if raw and isinstance(v, str) else json.dumps(v)
             for v in (old, new)]
    return Reason(path, f"{what} changed from {shown[0]} to {shown[1]}")
