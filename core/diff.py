"""What changed between two versions: pure functions over decoded content, no I/O.

Sections: ``metadata`` and ``content`` (structural JSON diff with JSON-pointer paths; list
elements are matched as a sequence, so an insertion in a long list is one ``add``, not a
``replace`` per shifted element), ``schema`` and ``records`` (a list of JSON objects: columns
added/removed/retyped, and rows keyed by the declared key, or a multiset diff without one),
``text`` (a unified diff) and ``blob`` (digest and size only). The records diff itself
streams through a temporary store and lives in ``core.records_diff``.

List paths read like a two-column diff, not a sequential JSON Patch: a ``remove`` points at
the element's index in ``before``, an ``add`` at its index in ``after``. A moved element is
one ``remove`` at its old index and one ``add`` at its new one.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    section: str
    op: str
    path: str
    before: Any = None
    after: Any = None
    count: int = 1  # rows this change stands for: a multiset diff reports each distinct row once


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
    keys = [canonical(v) for v in before], [canonical(v) for v in after]
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


# Built once: json.dumps with options builds a new encoder per call, which dominates the cost
# of encoding a million small rows.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical(value: Any) -> str:
    """Key-sorted compact JSON: equal values encode equally (1 and 1.0 do not)."""
    return _CANONICAL(value)


def is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def schema_of(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Column -> JSON type name (the set of types seen, joined with '|')."""
    seen: dict[str, set[str]] = {}
    for row in records:
        observe(seen, row, map(type, row.values()))
    return schema_from(seen)


def observe(seen: dict[str, set[str]], columns: Iterable[str], types: Iterable[type]) -> None:
    """Add the JSON type names of one row's values (given by Python type) to ``seen``."""
    for column, kind in zip(columns, types, strict=True):
        names = seen.get(column)
        if names is None:
            names = seen[column] = set()
        names.add(_TYPE_NAMES.get(kind, "unknown"))


def schema_from(seen: Mapping[str, set[str]]) -> dict[str, str]:
    return {c: "|".join(sorted(t)) for c, t in seen.items()}


# By exact type, not isinstance: a lookup per value is what a million-row diff can afford,
# and bool must not count as a number. Decoded JSON and CSV values are exactly these types.
_TYPE_NAMES: dict[type, str] = {type(None): "null", bool: "boolean", int: "number",
                                float: "number", str: "string", list: "array", dict: "object"}


def schema_diff(before: Mapping[str, str], after: Mapping[str, str]) -> Iterator[Change]:
    for column in sorted(set(before) | set(after)):
        if column not in after:
            yield Change("schema", "remove", pointer("", column), before[column], None)
        elif column not in before:
            yield Change("schema", "add", pointer("", column), None, after[column])
        elif before[column] != after[column]:
            yield Change("schema", "replace", pointer("", column), before[column], after[column])


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


@dataclass(frozen=True)
class Collected:
    changes: list[Change]  # the first ``limit`` changes, in order
    summary: dict[str, dict[str, int]]  # section -> op -> count, over all changes
    total: int  # all changes, kept or not
    truncated: bool  # there were more than ``limit``: ``changes`` misses some


def collect(changes: Iterable[Change], limit: int) -> Collected:
    """Count every change (by ``count``, so rows for records) but keep only the first
    ``limit``: a diff of two large datasets can have millions of changes, and only their
    counts and a pageable prefix are worth holding."""
    kept: list[Change] = []
    summary: dict[str, dict[str, int]] = {}
    total = 0
    for change in changes:
        ops = summary.setdefault(change.section, {})
        ops[change.op] = ops.get(change.op, 0) + change.count
        total += 1
        if total <= limit:
            kept.append(change)
    return Collected(kept, summary, total, total > limit)


def summarize(changes: Iterable[Change]) -> dict[str, dict[str, int]]:
    return collect(changes, 0).summary
