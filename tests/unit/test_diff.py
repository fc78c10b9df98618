"""Each diff kind on small known inputs, with the exact changes expected (pure: no I/O)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from core.artifact import Stage, VersionState
from core.comparison import content_changes, dataset_format
from core.diff import Change, collect, json_diff, schema_diff
from core.errors import ValidationError
from core.records_diff import Dataset, NotRecords, csv_cell, records_diff


def diff(before: Any, after: Any, section: str = "content") -> list[tuple[Any, ...]]:
    return [(c.op, c.path, c.before, c.after) for c in json_diff(before, after, section)]


def records(before: bytes | list[dict[str, Any]], after: bytes | list[dict[str, Any]],
            key: list[str] | None = None, fmt: str = "json") -> list[Change]:
    def data(side: bytes | list[dict[str, Any]]) -> bytes:
        return side if isinstance(side, bytes) else json.dumps(side).encode()
    return list(records_diff(Dataset(data(before), fmt, "ns/a@1"),
                             Dataset(data(after), fmt, "ns/a@2"), key))


def ops(changes: list[Change]) -> list[tuple[Any, ...]]:
    return [(c.section, c.op, c.path, c.before, c.after) for c in changes]


def test_metadata_add_remove_replace_with_escaped_pointers() -> None:
    before = {"owner": "ana", "a/b": 1, "tags": {"x~y": True}, "gone": None}
    after = {"owner": "bo", "a/b": 1, "tags": {"x~y": False}, "new": [1]}
    assert diff(before, after, "metadata") == [
        ("remove", "/gone", None, None), ("add", "/new", None, [1]),
        ("replace", "/owner", "ana", "bo"), ("replace", "/tags/x~0y", True, False)]
    assert diff({"a/b": 1}, {"a/b": 2}) == [("replace", "/a~1b", 1, 2)]


def test_nested_content_reports_the_deepest_path() -> None:
    before = {"model": {"layers": [{"units": 64}, {"units": 32}], "lr": 0.1}}
    after = {"model": {"layers": [{"units": 64}, {"units": 16}], "lr": 0.1}}
    assert diff(before, after) == [("replace", "/model/layers/1/units", 32, 16)]


def test_a_number_that_changes_type_is_a_replace() -> None:
    assert diff({"n": 1}, {"n": 1.0}) == [("replace", "/n", 1, 1.0)]


def test_an_insertion_in_a_long_list_is_one_add() -> None:
    before = list(range(1000))
    after = [*before[:500], "new", *before[500:]]
    assert diff(before, after) == [("add", "/500", None, "new")]


def test_a_moved_element_is_one_remove_and_one_add() -> None:
    before = [{"id": i} for i in range(1000)]
    after = [*before[:100], before[500], *before[100:500], *before[501:]]
    assert diff(before, after) == [("add", "/100", None, {"id": 500}),
                                   ("remove", "/500", {"id": 500}, None)]


def test_records_keyed_report_added_removed_and_changed_by_key() -> None:
    before = [{"id": 1, "x": "a"}, {"id": 2, "x": "b"}, {"id": 3, "x": "c"}]
    after = [{"id": 4, "x": "d"}, {"id": 2, "x": "B"}, {"id": 3, "x": "c"}]
    assert ops(records(before, after, ["id"])) == [
        ("records", "added", "4", None, {"id": 4, "x": "d"}),
        ("records", "changed", "2", {"id": 2, "x": "b"}, {"id": 2, "x": "B"}),
        ("records", "removed", "1", {"id": 1, "x": "a"}, None)]


def test_a_composite_key_joins_its_values_with_commas() -> None:
    before = [{"day": "mon", "shop": 1, "n": 5}, {"day": "a,b", "shop": "c", "n": 1},
              {"day": "a", "shop": "b,c", "n": 1}]
    after = [{"day": "mon", "shop": 1, "n": 6}, {"day": "a,b", "shop": "c", "n": 1}]
    assert ops(records(before, after, ["day", "shop"])) == [
        ("records", "changed", "mon,1", before[0], after[0]),
        ("records", "removed", "a,b,c", before[2], None)]  # not confused with ("a,b", "c")


def test_records_without_a_key_are_a_multiset_with_counts() -> None:
    row, other = {"x": 1}, {"x": 2}
    changes = records([row, row, row, other], [row, other, other, {"x": 3}])
    assert [(c.op, c.before, c.after, c.count) for c in changes] == [
        ("removed", row, None, 2), ("added", None, other, 1), ("added", None, {"x": 3}, 1)]
    assert collect(changes, 10).summary == {"records": {"removed": 2, "added": 2}}


def test_schema_diff_reports_columns_added_removed_and_retyped() -> None:
    before = [{"id": 1, "price": 1.5, "old": "x"}]
    after = [{"id": 1, "price": "1.5", "new": True}]
    assert [c for c in records(before, after, ["id"]) if c.section == "schema"] == [
        Change("schema", "add", "/new", None, "boolean"),
        Change("schema", "remove", "/old", "string", None),
        Change("schema", "replace", "/price", "number", "string")]
    assert list(schema_diff({"a": "null|number"}, {"a": "null|number"})) == []


CSV_BEFORE = b"id,name,amount,active\r\n1,ana,10,true\r\n2,bo,20.5,false\r\n3,cy,,true\r\n"
CSV_AFTER = b"id,name,amount,active\n2,bo,21,false\n3,cy,,true\n4,di,007,true\n\n"


def test_csv_with_a_key() -> None:
    assert ops(records(CSV_BEFORE, CSV_AFTER, ["id"], "csv")) == [
        ("schema", "replace", "/amount", "null|number", "null|number|string"),
        ("records", "changed", "2", {"id": 2, "name": "bo", "amount": 20.5, "active": False},
         {"id": 2, "name": "bo", "amount": 21, "active": False}),
        ("records", "added", "4", None, {"id": 4, "name": "di", "amount": "007",
                                         "active": True}),
        ("records", "removed", "1", {"id": 1, "name": "ana", "amount": 10, "active": True},
         None)]


def test_csv_without_a_key_is_a_multiset() -> None:
    before, after = b"a,b\n1,x\n1,x\n2,y\n", b"b,a\nx,1\ny,2\ny,2\n"  # columns reordered
    assert [(c.op, c.path, c.before, c.after, c.count)
            for c in records(before, after, None, "csv")] == [
        ("removed", "", {"a": 1, "b": "x"}, None, 1), ("added", "", None, {"a": 2, "b": "y"}, 1)]


def test_an_empty_csv_file_or_a_header_alone_has_no_rows() -> None:
    assert ops(records(b"", b"id,x\n1,a\n", ["id"], "csv")) == [
        ("schema", "add", "/id", None, "number"), ("schema", "add", "/x", None, "string"),
        ("records", "added", "1", None, {"id": 1, "x": "a"})]
    assert ops(records(b"id,x\r\n", b"", ["id"], "csv")) == []


@pytest.mark.parametrize(("cell", "value"), [
    ("", None), ("0", 0), ("-12", -12), ("-0", 0), ("3.50", 3.5), ("1e3", 1000.0),
    ("true", True), ("false", False), ("007", "007"), ("+1", "+1"), (" 1", " 1"),
    ("NaN", "NaN"), ("1e999", "1e999"), ("True", "True"), ("2024-01-02", "2024-01-02"),
    ('say "hi"', 'say "hi"'), ("12345678901234567890", 12345678901234567890)])
def test_csv_cells_are_typed_as_json_would_have_them(cell: str, value: Any) -> None:
    text, kind = csv_cell(cell)
    assert json.loads(text) == value
    assert type(value) is kind


def test_ndjson_rows_with_a_key_match_json_and_csv_rows() -> None:
    ndjson = b'{"id": 1, "v": "a"}\n\n{"id": 2, "v": "b"}\n'
    assert ops(records(ndjson, b'{"v":"b","id":2}\n', ["id"], "ndjson")) == [
        ("records", "removed", "1", {"id": 1, "v": "a"}, None)]
    # The same data in other formats compares equal row by row (canonical JSON).
    csv_rows = Dataset(b"v,id\na,1\nb,2\n", "csv", "ns/c@1")
    json_rows = Dataset(b'[{"id":1,"v":"a"},{"id":2,"v":"b"}]', "json", "ns/j@1")
    for other in (csv_rows, json_rows):
        assert list(records_diff(Dataset(ndjson, "ndjson", "ns/n@1"), other, ["id"])) == []
        assert list(records_diff(other, Dataset(ndjson, "ndjson", "ns/n@1"), None)) == []


@pytest.mark.parametrize(("fmt", "data", "message"), [
    ("csv", b"id,x\n1,a\n2\n", "ns/a@2 is not valid csv: line 3 has 1 cells, the header 2"),
    ("csv", b"id,id\n1,2\n", "repeats a column name"),
    ("csv", b"id,x\n\xff,1\n", "ns/a@2 is not valid csv: 'utf-8' codec"),
    ("csv", b"x\n1\n", "ns/a@2 has no column 'id' of the key ['id']; its columns: ['x']"),
    ("ndjson", b'{"id": 1}\n[1]\n', "ns/a@2 is not valid ndjson: line 2 is not a JSON object"),
    ("ndjson", b'{"id": NaN}\n', "line 1: NaN is not JSON"),
    ("csv", b"id\n1\n1\n", "the key ['id'] is not unique in ns/a@2: '1' names more than one"),
    ("json", b'[{"x": 1}]', "ns/a@2 has no column 'id' of the key ['id']; its columns: ['x']"),
])
def test_a_dataset_that_cannot_be_read_is_refused_with_where(fmt: str, data: bytes,
                                                               message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        records({"csv": b"id\n", "json": b"[]", "ndjson": b""}[fmt], data, ["id"], fmt)


def test_json_that_is_not_a_list_of_objects_is_not_records() -> None:
    for data in (b'{"a": 1}', b'[{"a": 1}, 2]'):
        with pytest.raises(NotRecords):
            records([{"a": 1}], data)


def test_collect_counts_everything_and_keeps_the_first_changes() -> None:
    before = [{"id": i, "v": 0} for i in range(50)]
    after = [{"id": i, "v": 1} for i in range(50)]
    found = collect(records(before, after, ["id"]), 20)
    assert (found.total, len(found.changes), found.truncated) == (50, 20, True)
    assert found.summary == {"records": {"changed": 50}}
    assert [c.path for c in found.changes] == [str(i) for i in range(20)]
    assert collect(found.changes, 20).truncated is False


@pytest.mark.parametrize(("content_type", "media_type", "metadata", "expected"), [
    ("json", None, {"format": "csv"}, "json"), ("text", "text/csv; charset=utf-8", {}, "csv"),
    ("bytes", "text/csv", {}, "csv"), ("text", "application/x-ndjson", {}, "ndjson"),
    ("text", "application/jsonl", {}, "ndjson"), ("text", "text/plain", {"format": "CSV"}, "csv"),
    ("text", "text/csv", {"format": "ndjson"}, "ndjson"), ("text", "text/plain", {}, None),
    ("bytes", None, {"format": "parquet"}, None)])
def test_what_makes_a_version_a_dataset(content_type: str, media_type: str | None,
                                        metadata: dict[str, Any], expected: str | None) -> None:
    assert dataset_format(content_type, media_type, metadata) == expected


def version(number: int, data: bytes, content_type: str, media_type: str | None = None,
            **metadata: Any) -> VersionState:
    return VersionState("ns", "a", number, f"v{number}", Stage.DRAFT,
                        hashlib.sha256(data).hexdigest(), len(data), media_type, content_type,
                        metadata, (), None, datetime(2026, 1, 1, tzinfo=UTC), number)


def compare(before: tuple[bytes, str, str | None], after: tuple[bytes, str, str | None],
            key: list[str] | None = None) -> list[tuple[Any, ...]]:
    old, new = version(1, *before), version(2, *after)
    return ops(list(content_changes(old, new, before[0], after[0], key)))


def test_text_is_a_unified_diff() -> None:
    [(section, op, path, before, after)] = compare((b"a\nb\n", "text", None),
                                                   (b"a\nc\n", "text", None))
    assert (section, op, path, before) == ("content", "replace", "", None)
    assert after == "--- ns/a@1\n+++ ns/a@2\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"


def test_bytes_report_digest_and_size_only() -> None:
    old, new = b"\x00\x01", b"\x00\x02\x03"
    assert compare((old, "bytes", None), (new, "bytes", None)) == [
        ("blob", "replace", "",
         {"digest": hashlib.sha256(old).hexdigest(), "size": 2,
          "mediaType": None},
         {"digest": hashlib.sha256(new).hexdigest(), "size": 3, "mediaType": None})]


def test_the_service_picks_the_diff_by_content() -> None:
    csv_v = (b"id,x\n1,a\n", "text", "text/csv")
    json_v = (b'[{"id":1,"x":"b"}]', "json", None)
    assert compare(csv_v, json_v, ["id"]) == [
        ("records", "changed", "1", {"id": 1, "x": "a"}, {"id": 1, "x": "b"})]
    assert compare((b'{"a":[1]}', "json", None), (b'{"a":[1,2]}', "json", None)) == [
        ("content", "add", "/a/1", None, 2)]
    assert compare((b"[]", "json", None), (b"[1]", "json", None)) == [
        ("content", "add", "/0", None, 1)]
    assert compare((b"[1]", "json", None), csv_v)[0][:2] == ("blob", "replace")
    assert compare((b"x\n1\n", "text", None), (b"x\n2\n", "text", None))[0][1] == "replace"
