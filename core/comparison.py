"""Application service for diffs: load two versions (of any artifacts) and compare them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.artifact import VersionState
from core.commands import VersionRef
from core.content import decode_content
from core.diff import Change, is_records, json_diff, records_diff, summarize, text_diff
from core.errors import NotFound, ValidationError
from core.services import ArtifactService


@dataclass(frozen=True)
class Comparison:
    before: VersionState
    after: VersionState
    changes: list[Change]

    @property
    def identical(self) -> bool:
        return not self.changes

    @property
    def summary(self) -> dict[str, dict[str, int]]:
        return summarize(self.changes)


class DiffService:
    def __init__(self, artifacts: ArtifactService) -> None:
        self.artifacts = artifacts

    async def diff(self, before: VersionRef, after: VersionRef,
                   key: Sequence[str] | None = None) -> Comparison:
        """Metadata, content (structural, records or text) and blob changes, in that order."""
        old, new = await self._version(before), await self._version(after)
        changes = list(json_diff(dict(old.metadata), dict(new.metadata), "metadata"))
        if old.digest != new.digest:
            changes += await self._content_changes(old, new, key or _declared_key(old, new))
        return Comparison(old, new, changes)

    async def _version(self, ref: VersionRef) -> VersionState:
        state = await self.artifacts.load(ref.namespace, ref.name)
        if not state.exists:
            raise NotFound(f"artifact {ref.namespace}/{ref.name} does not exist")
        return state.resolve(ref)

    async def _content_changes(self, old: VersionState, new: VersionState,
                               key: Sequence[str] | None) -> list[Change]:
        if old.content_type != new.content_type or old.content_type == "bytes":
            return [Change("blob", "replace", "", _blob(old), _blob(new))]
        before = decode_content(await self.artifacts.content_of(old), old.content_type)
        after = decode_content(await self.artifacts.content_of(new), new.content_type)
        if old.content_type == "text":
            return list(text_diff(before, after, (str(old.key), str(new.key))))
        if is_records(before) and is_records(after):
            return list(records_diff(before, after, key))
        return list(json_diff(before, after, "content"))


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
