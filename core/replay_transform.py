"""Run a user's Python transform over every version of an artifact, in order, and optionally
diff it against a second transform version by version: "would my new pipeline code have
produced different data on last month's versions?"

The content is decoded as the diff engine reads it (JSON -> Python values, text -> str,
bytes -> bytes) and passed as the one positional argument; a function that also takes a
``version`` keyword gets the version's attributes as a dict. An exception in the user's
function is recorded for that version (type and message, not the traceback) and the run
goes on. Outputs are compared with the diff engine: lists of objects as records (schema and
rows, keyed by the version's declared ``key`` metadata as in diffs), other JSON-like values
structurally, strings as text, bytes by digest.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.artifact import VersionState
from core.content import decode_content
from core.diff import Change, collect, json_diff, text_diff
from core.errors import ValidationError
from core.records_diff import Dataset, NotRecords, records_diff
from core.services import ArtifactService

MAX_CHANGES_PER_VERSION = 100
Transform = Callable[..., Any]


@dataclass(frozen=True)
class Outcome:
    output: Any = None
    error: str | None = None  # "ValueError: message" when the function raised


@dataclass(frozen=True)
class VersionRun:
    number: int
    label: str
    transform: Outcome
    against: Outcome | None = None
    changes: list[Change] = field(default_factory=list)  # the first few, when compared
    summary: dict[str, dict[str, int]] = field(default_factory=dict)
    total: int = 0

    @property
    def errors(self) -> list[str]:
        return [o.error for o in (self.transform, self.against) if o is not None and o.error]

    @property
    def differs(self) -> bool:
        return self.total > 0


def load_transform(spec: str) -> Transform:
    """``package.module:function`` (importable, the working directory included) or
    ``path/to/file.py:function``."""
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute.isidentifier():
        raise ValidationError(f"{spec!r} is not MODULE:FUNCTION (e.g. mypipeline:clean)")
    try:
        module = _import(target)
    except ValidationError:
        raise
    except Exception as exc:  # the user's module failed while importing
        raise ValidationError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValidationError(f"{target!r} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]


def _import(target: str) -> Any:
    if target.endswith(".py"):
        path = Path(target)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if not path.is_file() or spec is None or spec.loader is None:
            raise ValidationError(f"no Python file {target!r}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules next to the user
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise ValidationError(f"no module named {target!r}") from exc
        raise


def call(function: Transform, content: Any, version: VersionState) -> Outcome:
    try:
        if _takes_version(function):
            return Outcome(function(content, version=describe(version)))
        return Outcome(function(content))
    except Exception as exc:  # the user's code: reported per version, never fatal
        return Outcome(error=f"{type(exc).__name__}: {exc}")


def _takes_version(function: Transform) -> bool:
    try:
        return "version" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def describe(version: VersionState) -> dict[str, Any]:
    return {"namespace": version.namespace, "name": version.name, "number": version.number,
            "label": version.label, "stage": str(version.stage), "digest": version.digest,
            "mediaType": version.media_type, "metadata": dict(version.metadata),
            "createdAt": version.created_at.isoformat()}


def compare(before: Any, after: Any, labels: tuple[str, str],
            key: list[str] | None = None) -> Iterator[Change]:
    """The diff engine over two outputs (see the module docstring); records are matched by
    ``key`` when given (the version's declared ``key`` metadata), else as multisets."""
    if isinstance(before, bytes | bytearray) or isinstance(after, bytes | bytearray):
        if _fingerprint(before) != _fingerprint(after):
            yield Change("blob", "replace", "", _fingerprint(before), _fingerprint(after))
        return
    if isinstance(before, str) and isinstance(after, str):
        yield from text_diff(before, after, labels)
        return
    a, b = jsonable(before), jsonable(after)
    if _records(a) and _records(b):
        try:
            yield from records_diff(Dataset(_encode(a), "json", labels[0]),
                                    Dataset(_encode(b), "json", labels[1]), key)
            return
        except NotRecords:
            pass
    yield from json_diff(a, b, "content")


def _records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def jsonable(value: Any) -> Any:
    """A round trip through JSON (tuples become lists; unknown objects their str)."""
    return json.loads(json.dumps(value, default=str))


def _fingerprint(value: Any) -> dict[str, Any]:
    data = bytes(value) if isinstance(value, bytes | bytearray) else _encode(jsonable(value))
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def declared_key(version: VersionState) -> list[str] | None:
    """The record key a version declares in its metadata (a column or a list of them)."""
    key = version.metadata.get("key")
    if isinstance(key, str):
        return [key]
    if isinstance(key, list) and key and all(isinstance(k, str) for k in key):
        return list(key)
    return None


class TransformReplay:
    """Runs transforms over an artifact's versions, read through the artifact service."""

    def __init__(self, artifacts: ArtifactService) -> None:
        self.artifacts = artifacts

    async def run(self, namespace: str, name: str, transform: Transform,
                  against: Transform | None = None) -> list[VersionRun]:
        """One ``VersionRun`` per version, oldest first (purged content is an error)."""
        state = await self.artifacts.load_existing(namespace, name)
        return [await self._version(v, transform, against) for v in state.versions]

    async def _version(self, version: VersionState, transform: Transform,
                       against: Transform | None) -> VersionRun:
        data = await self.artifacts.store.get_content(version.digest)
        if data is None:
            missing = Outcome(error=f"content {version.digest[:12]} is not stored (purged?)")
            return VersionRun(version.number, version.label, missing,
                              missing if against else None)
        content = decode_content(data, version.content_type)
        first = call(transform, content, version)
        if against is None:
            return VersionRun(version.number, version.label, first)
        second = call(against, content, version)
        if first.error or second.error:
            return VersionRun(version.number, version.label, first, second)
        labels = (f"{version.key} transform", f"{version.key} against")
        found = collect(compare(first.output, second.output, labels, declared_key(version)),
                        MAX_CHANGES_PER_VERSION)
        return VersionRun(version.number, version.label, first, second, found.changes,
                          found.summary, found.total)
