"""What changed between two versions: pure functions over decoded content, no I/O.

Sections: ``metadata`` and ``content`` (structural JSON diff with JSON-pointer paths; list
elements are matched as a sequence, so an insertion in a long list is one ``add``, not a
``replace`` per shifted element), ``schema`` and ``records`` (a list of JSON objects: columns
added/removed/retyped, and rows keyed by the declared key, or a multiset diff without one),
``text`` (a unified diff) and ``blob`` (digest and size only).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    section: str
    op: str
    path: str
    before: Any = None
    after: Any = None


def pointer(path: str, token: str | int) -> str:
    """Append one JSON-pointer token (RFC 6901 escaping)."""
    return f"{path}/{str(token).replace('~', '~0').replace('/', '~1')}"


def json_diff(before: Any, after: Any, section: str, path: str = "") -> Iterator[Change]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after)):
            here = pointer(path, key)
            if key not in after:
                yield Change(section, "remove", here, before[key], None)
            elif key not in before:
                yield Change(section, "add", here, None, after[key])
            else:
                yield from json_diff(before[key], after[key], section, here)
    elif isinstance(before, list) and isinstance(after, list):
        yield from _list_diff(before, after, section, path)
    elif before != after or type(before) is not type(after):
        yield Change(section, "replace", path, before, after)


def _list_diff(before: list[Any], after: list[Any], section: str, path: str
               ) -> Iterator[Change]:
    keys = [_canonical(v) for v in before], [_canonical(v) for v in after]
    matcher = difflib.SequenceMatcher(a=keys[0], b=keys[1], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace" and i2 - i1 == j2 - j1:
            for offset in range(i2 - i1):
                yield from json_diff(before[i1 + offset], after[j1 + offset], section,
                                     pointer(path, j1 + offset))
        elif op in ("replace", "delete", "insert"):
            for i in range(i1, i2):
                yield Change(section, "remove", pointer(path, i), before[i], None)
            for j in range(j1, j2):
                yield Change(section, "add", pointer(path, j), None, after[j])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def schema_of(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Column -> JSON type name (the set of types seen, joined with '|')."""
    seen: dict[str, set[str]] = {}
    for row in records:
        for column, value in row.items():
            seen.setdefault(column, set()).add(_type_name(value))
    return {c: "|".join(sorted(t)) for c, t in seen.items()}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "unknown")


def schema_diff(before: Mapping[str, str], after: Mapping[str, str]) -> Iterator[Change]:
    for column in sorted(set(before) | set(after)):
        if column not in after:
            yield Change("schema", "remove", pointer("", column), before[column], None)
        elif column not in before:
            yield Change("schema", "add", pointer("", column), None, after[column])
        elif before[column] != after[column]:
            yield Change("schema", "replace", pointer("", column), before[column], after[column])


def records_diff(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]],
                 key: Sequence[str] | None) -> Iterator[Change]:
    yield from schema_diff(schema_of(before), schema_of(after))
    if not key:
        yield from _multiset_diff(before, after)
        return
    old = {_key_of(r, key): r for r in before}
    new = {_key_of(r, key): r for r in after}
    for k in sorted(set(old) | set(new)):
        if k not in new:
            yield Change("records", "removed", k, old[k], None)
        elif k not in old:
            yield Change("records", "added", k, None, new[k])
        elif old[k] != new[k]:
            yield Change("records", "changed", k, old[k], new[k])


def _key_of(row: Mapping[str, Any], key: Sequence[str]) -> str:
    values = [row.get(column) for column in key]
    return ",".join("" if v is None else str(v) for v in values)


def _multiset_diff(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
                   ) -> Iterator[Change]:
    old, new = Counter(map(_canonical, before)), Counter(map(_canonical, after))
    for row, count in sorted((old - new).items()):
        for _ in range(count):
            yield Change("records", "removed", "", json.loads(row), None)
    for row, count in sorted((new - old).items()):
        for _ in range(count):
            yield Change("records", "added", "", None, json.loads(row))


def text_diff(before: str, after: str, labels: tuple[str, str]) -> Iterator[Change]:
    if before == after:
        return
    lines = difflib.unified_diff(before.splitlines(keepends=True),
                                 after.splitlines(keepends=True), *labels)
    yield Change("content", "replace", "", None, "".join(lines))


def semver_bump(before: Any, after: Any) -> str:
    """What a change of content means for a semantic version: columns removed or retyped
    break readers (MAJOR), columns added do not (MINOR), anything else is PATCH."""
    if is_records(before) and is_records(after):
        changes = list(schema_diff(schema_of(before), schema_of(after)))
        if any(c.op in ("remove", "replace") for c in changes):
            return "MAJOR"
        if changes:
            return "MINOR"
    return "PATCH"


def summarize(changes: Sequence[Change]) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for change in changes:
        ops = summary.setdefault(change.section, {})
        ops[change.op] = ops.get(change.op, 0) + 1
    return summary
