"""Application service for diffs: load two versions (of any artifacts) and compare them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from core.artifact import VersionState
from core.commands import VersionRef
from core.diff import Change, collect, json_diff, text_diff
from core.errors import ContentGone, NotFound, ValidationError
from core.records_diff import Dataset, NotRecords, records_diff
from core.services import ArtifactService

MAX_CHANGES = 10_000
CSV_MEDIA_TYPES = frozenset({"text/csv"})
NDJSON_MEDIA_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
DECLARED_FORMATS = {"csv": "csv", "ndjson": "ndjson", "jsonl": "ndjson"}


@dataclass(frozen=True)
class Comparison:
    before: VersionState
    after: VersionState
    changes: list[Change]  # the first ``max_changes`` changes, in order, for paging
    summary: dict[str, dict[str, int]]  # section -> op -> count, over ALL changes (rows)
    total: int = 0  # all changes, kept in ``changes`` or not
    truncated: bool = False  # ``changes`` stops short of ``total``; ``summary`` does not

    @property
    def identical(self) -> bool:
        return self.total == 0


class DiffService:
    def __init__(self, artifacts: ArtifactService, *, max_changes: int = MAX_CHANGES) -> None:
        self.artifacts = artifacts
        self.max_changes = max_changes

    async def diff(self, before: VersionRef, after: VersionRef,
                   key: Sequence[str] | None = None) -> Comparison:
        """Metadata, then content changes (schema and records, structural, text or blob)."""
        old, new = await self._version(before), await self._version(after)
        for version in (old, new):
            if version.purged:  # a diff without its content would look like "no change"
                raise ContentGone(f"cannot diff {version.key}: its content was purged by "
                                  "retention", version=str(version.key))
        data = None
        if old.digest != new.digest:
            data = await self.artifacts.content_of(old), await self.artifacts.content_of(new)
            key = key or _declared_key(old, new)
        # A diff of large datasets costs seconds of CPU and disk: off the event loop. The
        # whole comparison runs in the one thread, which its sqlite connection requires.
        return await asyncio.to_thread(self._compare, old, new, data, key)

    def _compare(self, old: VersionState, new: VersionState, data: tuple[bytes, bytes] | None,
                 key: Sequence[str] | None) -> Comparison:
        changes: Iterator[Change] = json_diff(dict(old.metadata), dict(new.metadata),
                                              "metadata")
        if data is not None:
            changes = chain(changes, content_changes(old, new, *data, key))
        found = collect(changes, self.max_changes)
        return Comparison(old, new, found.changes, found.summary, found.total, found.truncated)

    async def _version(self, ref: VersionRef) -> VersionState:
        state = await self.artifacts.load(ref.namespace, ref.name)
        if not state.exists:
            raise NotFound(f"artifact {ref.namespace}/{ref.name} does not exist")
        return state.resolve(ref)


def content_changes(old: VersionState, new: VersionState, before: bytes, after: bytes,
                    key: Sequence[str] | None) -> Iterator[Change]:
    """Two datasets (CSV, NDJSON, a JSON list of objects, in any mix) -> the streaming records
    diff; other JSON -> structural; text -> unified; anything else -> digest and size."""
    formats = [dataset_format(v.content_type, v.media_type, v.metadata) for v in (old, new)]
    if formats[0] and formats[1]:
        try:
            yield from records_diff(Dataset(before, formats[0], str(old.key)),
                                    Dataset(after, formats[1], str(new.key)), key)
            return
        except NotRecords:
            pass  # raised before any change was yielded: compare the JSON as it is, below
    if old.content_type != new.content_type or old.content_type == "bytes":
        yield Change("blob", "replace", "", _blob(old), _blob(new))
    elif old.content_type == "text":
        yield from text_diff(before.decode(), after.decode(), (str(old.key), str(new.key)))
    else:
        yield from json_diff(json.loads(before), json.loads(after), "content")


def dataset_format(content_type: str, media_type: str | None,
                   metadata: Mapping[str, Any]) -> str | None:
    """How to read a version as records, or None if it is not a dataset. JSON content says
    for itself (a list of objects is records); text or bytes are CSV or NDJSON when the
    metadata ``format`` or the media type declares it (the metadata wins: it is the caller's
    explicit word, while the media type may be a default)."""
    if content_type == "json":
        return "json"
    declared = metadata.get("format")
    if isinstance(declared, str) and declared.lower() in DECLARED_FORMATS:
        return DECLARED_FORMATS[declared.lower()]
    base = (media_type or "").split(";")[0].strip().lower()
    if base in CSV_MEDIA_TYPES:
        return "csv"
    return "ndjson" if base in NDJSON_MEDIA_TYPES else None


def _blob(version: VersionState) -> dict[str, Any]:
    return {"digest": version.digest, "size": version.size, "mediaType": version.media_type}


def _declared_key(*versions: VersionState) -> list[str] | None:
    """The record key the versions declare in their metadata (``key``: a column or a list)."""
    for version in versions:
        key = version.metadata.get("key")
        if isinstance(key, str):
            return [key]
        if isinstance(key, list) and all(isinstance(k, str) for k in key):
            return list(key)
        if key is not None:
            raise ValidationError(f"metadata key of {version.key} must be a column name or a"
                                  " list of them")
    return None
