"""The records diff, streaming: two datasets compared row by row in bounded memory.

A dataset is CSV, NDJSON or a JSON list of objects. Each side is parsed one row at a time
and written to a private temporary sqlite database (on disk, deleted when closed, page cache
capped); sqlite then joins the sides by key, or groups equal rows when there is no key, and
only the differing rows come back to Python. So apart from the two versions' raw bytes,
Python holds one row at a time, never either side as objects, let alone both.

Rows are compared by their canonical JSON (key-sorted), so a CSV and a JSON version of the
same data compare equal. CSV is read with a header row; its cells are typed as a reader
would guess: a cell that is a JSON number (``-12``, ``3.5``, ``1e3``; not ``007``, ``+1``,
``NaN`` or `` 1``) becomes a number, ``true``/``false`` a boolean, an empty cell null (CSV
cannot tell empty from missing), and anything else stays a string. Blank lines are skipped;
a row with more or fewer cells than the header is refused.

Key values become paths as text: strings as they are, null as ``""``, other values as JSON;
a composite key joins its values with ``,`` (matching uses an unambiguous encoding, so
``"a,b"`` + ``"c"`` and ``"a"`` + ``"b,c"`` stay different rows). Matching by that text means
``1`` in one version and ``"1"`` in another are the same row (whose value then changed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import add, itemgetter
from typing import Any

from core.diff import Change, canonical, observe, schema_diff, schema_from
from core.errors import ValidationError

CACHE_KIB = 32 * 1024  # sqlite's page cache; beyond it pages and sorts spill to the temp file


class NotRecords(Exception):
    """JSON content that is not a list of objects; the caller diffs it structurally instead.
    Raised while loading, so always before the first change is yielded."""


_Shape = tuple[tuple[str, ...], tuple[type, ...]]  # a row's columns and its values' types
_Encoded = tuple[str, str, _Shape]  # key text, canonical row, shape


@dataclass(frozen=True)
class Dataset:
    data: bytes
    format: str  # "csv" | "ndjson" | "json"
    label: str  # names the version in error messages, e.g. "ns/name@2"


def records_diff(before: Dataset, after: Dataset, key: Sequence[str] | None
                 ) -> Iterator[Change]:
    """Schema changes, then row changes: keyed (``added`` / ``changed`` in ``after``'s order,
    then ``removed`` in ``before``'s), or without a key one change per distinct row whose
    count differs, ``count`` saying by how many rows."""
    columns = tuple(key or ())
    db = _open()
    try:
        old = _load(db, "old", before, columns)
        new = _load(db, "new", after, columns)
        yield from schema_diff(old, new)
        yield from _keyed(db, columns) if columns else _multiset(db)
    finally:
        db.close()


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_STRING = json.encoder.encode_basestring  # the escaping canonical() uses
_NULL, _TRUE, _FALSE = ("null", type(None)), ("true", bool), ("false", bool)


def csv_cell(cell: str) -> tuple[str, type]:
    """A CSV cell as canonical JSON text and the type it decodes to (module docstring)."""
    if not cell:
        return _NULL
    if cell[0] in "-0123456789":
        number = _NUMBER.fullmatch(cell)
        if number is not None and number.lastindex is None:  # neither fraction nor exponent
            return ("0" if cell == "-0" else cell), int
        if number is not None and math.isfinite(value := float(cell)):  # JSON has no 1e999
            return repr(value), float
    elif cell in ("true", "false"):
        return _TRUE if cell == "true" else _FALSE
    return _STRING(cell), str


def _csv_encoded(dataset: Dataset, key: tuple[str, ...]) -> Iterator[_Encoded]:
    """Rows written as canonical JSON text directly: a dict per row, then encoded, would cost
    twice as much for the same string."""
    # utf-8-sig: spreadsheets often export a byte-order mark, which is not part of the header
    text = io.TextIOWrapper(io.BytesIO(dataset.data), encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    header = next(reader, None)
    if header is None:  # an empty file: no columns, no rows
        return
    if len(set(header)) != len(header):
        raise ValueError(f"the header repeats a column name: {header}")
    _check_key(dataset, key, header)
    width, columns, at = len(header), tuple(header), [header.index(c) for c in key]
    order = sorted(range(width), key=header.__getitem__)  # what sort_keys does
    names = [_STRING(header[i]) + ":" for i in order]
    sort = itemgetter(*order) if width > 1 else tuple
    for cells in reader:
        if not cells:
            continue
        if len(cells) != width:
            raise ValueError(f"line {reader.line_num} has {len(cells)} cells, the header"
                             f" {width}")
        texts, types = zip(*map(csv_cell, cells), strict=True)
        keys = [cells[i] if types[i] is str else texts[i] if cells[i] else "" for i in at]
        yield (keys[0] if len(at) == 1 else canonical(keys) if at else "",
               "{" + ",".join(map(add, names, sort(texts))) + "}", (columns, types))


def _ndjson_rows(data: bytes) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(io.BytesIO(data), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {number} is not a JSON object")
        yield row


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_rows(data: bytes) -> Iterator[dict[str, Any]]:
    """The elements of a JSON array of objects, decoded one at a time from the text."""
    text, decoder = data.decode(), json.JSONDecoder(parse_constant=_refuse_constant)
    at = _skip(text, 0)
    if text[at:at + 1] != "[":
        raise NotRecords
    at = _skip(text, at + 1)
    end = text[at:at + 1] == "]"
    while not end:
        row, at = decoder.raw_decode(text, at)
        if not isinstance(row, dict):
            raise NotRecords
        yield row
        at = _skip(text, at)
        end = text[at:at + 1] == "]"
        if not end and text[at:at + 1] != ",":
            raise ValueError(f"expected ',' or ']' at character {at}")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    space = _SPACE.match(text, at)
    return space.end() if space else at


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _open() -> sqlite3.Connection:
    # "": a private temporary database on disk that sqlite deletes when it is closed, even
    # if this process dies. It is scratch space, so durability is switched off entirely.
    db = sqlite3.connect("", isolation_level=None)
    for pragma in (f"cache_size = -{CACHE_KIB}", "journal_mode = OFF", "synchronous = OFF",
                   "temp_store = FILE"):
        db.execute(f"PRAGMA {pragma}")
    return db


def _load(db: sqlite3.Connection, table: str, dataset: Dataset, key: tuple[str, ...]
          ) -> dict[str, str]:
    """Stream one side into ``table`` (key text, canonical row) and return its schema."""
    seen: dict[str, set[str]] = {}
    db.execute(f"CREATE TABLE {table} (key TEXT NOT NULL, row TEXT NOT NULL)")
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO {table} VALUES (?, ?)", _encoded(dataset, key, seen))
    db.execute("COMMIT")
    schema = schema_from(seen)
    if schema:
        _check_key(dataset, key, list(schema))
    # Indexed after loading, not while: one sort is much faster than a million B-tree inserts.
    if not key:
        db.execute(f"CREATE INDEX {table}_row ON {table} (row)")
        return schema
    try:
        db.execute(f"CREATE UNIQUE INDEX {table}_key ON {table} (key)")
    except sqlite3.IntegrityError:
        (twice,) = db.execute(f"SELECT key FROM {table} GROUP BY key HAVING count(*) > 1"
                              " LIMIT 1").fetchone()
        raise ValidationError(
            f"the key {list(key)} is not unique in {dataset.label}: {_path(twice, key)!r}"
            " names more than one row; a keyed diff needs a unique key (without one it"
            " compares the rows as a multiset)") from None
    return schema


def _check_key(dataset: Dataset, key: tuple[str, ...], columns: list[str]) -> None:
    if missing := [column for column in key if column not in columns]:
        raise ValidationError(f"{dataset.label} has no column {missing[0]!r} of the key"
                              f" {list(key)}; its columns: {sorted(columns)}")


SHAPES_HELD = 10_000


def _encoded(dataset: Dataset, key: tuple[str, ...], seen: dict[str, set[str]]
             ) -> Iterator[tuple[str, str]]:
    """(key text, canonical row) per row, noting column types in ``seen`` on the way."""
    # Types are noted per distinct row shape (columns and value types), not per value: a
    # dataset has few shapes, and a set lookup per row is far cheaper than a loop per cell.
    # Shapes are folded into ``seen`` whenever many pile up, so ragged data stays bounded.
    shapes: set[_Shape] = set()
    if dataset.format == "csv":
        encoded = _csv_encoded(dataset, key)
    else:
        rows = (_ndjson_rows if dataset.format == "ndjson" else _json_rows)(dataset.data)
        encoded = ((_key_text(r, key), canonical(r), (tuple(r), tuple(map(type, r.values()))))
                   for r in rows)
    try:
        for key_text, row, shape in encoded:
            shapes.add(shape)
            if len(shapes) > SHAPES_HELD:
                _fold(seen, shapes)
            yield key_text, row
    except (UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise ValidationError(f"{dataset.label} is not valid {dataset.format}: {exc}") from None
    _fold(seen, shapes)


def _fold(seen: dict[str, set[str]], shapes: set[_Shape]) -> None:
    for columns, types in shapes:
        observe(seen, columns, types)
    shapes.clear()


def _key_text(row: Mapping[str, Any], key: tuple[str, ...]) -> str:
    if len(key) == 1:
        return _text(row.get(key[0]))
    return canonical([_text(row.get(column)) for column in key]) if key else ""


def _text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)  # what JSON writes, without the encoder's overhead
    return "" if value is None else canonical(value)


def _path(key_text: str, key: tuple[str, ...]) -> str:
    return key_text if len(key) == 1 else ",".join(json.loads(key_text))


_CHANGED = """SELECT new.key, old.row, new.row FROM new LEFT JOIN old ON old.key = new.key
    WHERE old.row IS NULL OR old.row <> new.row ORDER BY new.rowid"""
_REMOVED = """SELECT key, row FROM old WHERE NOT EXISTS (SELECT 1 FROM new WHERE new.key =
    old.key) ORDER BY rowid"""


def _keyed(db: sqlite3.Connection, key: tuple[str, ...]) -> Iterator[Change]:
    for text, before, after in db.execute(_CHANGED):
        if before is None:
            yield Change("records", "added", _path(text, key), None, json.loads(after))
        else:
            yield Change("records", "changed", _path(text, key), json.loads(before),
                         json.loads(after))
    for text, before in db.execute(_REMOVED):
        yield Change("records", "removed", _path(text, key), json.loads(before), None)


# Each distinct row with how often each side has it; the correlated counts use the indexes.
_COUNTS = """SELECT * FROM (SELECT row, count(*) AS n, (SELECT count(*) FROM new WHERE
    new.row = old.row) AS m FROM old GROUP BY row) WHERE n <> m
  UNION ALL
  SELECT row, 0, count(*) FROM new WHERE NOT EXISTS (SELECT 1 FROM old WHERE old.row =
    new.row) GROUP BY row
  ORDER BY 1"""


def _multiset(db: sqlite3.Connection) -> Iterator[Change]:
    for row, before, after in db.execute(_COUNTS):
        if before > after:
            yield Change("records", "removed", "", json.loads(row), None, before - after)
        elif after > before:
            yield Change("records", "added", "", None, json.loads(row), after - before)
