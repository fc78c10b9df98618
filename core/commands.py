"""Commands (imperative): what a caller asks the system to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VersionRef:
    """A version by number, by label, or (neither) the latest."""

    namespace: str
    name: str
    number: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        suffix = f"@{self.number}" if self.number is not None else (
            f"@{self.label}" if self.label is not None else "")
        return f"{self.namespace}/{self.name}{suffix}"


@dataclass(frozen=True)
class IngestVersion:
    namespace: str
    name: str
    kind: str | None = None
    content: Any = None
    text: str | None = None
    content_base64: str | None = None
    media_type: str | None = None
    metadata: Mapping[str, Any] | None = None
    parents: tuple[VersionRef, ...] = ()
    producer: str | None = None
    idempotency_key: str | None = None
    expected_version: int | None = None
    force: bool = False
    actor: str | None = None
    bump: str | None = None  # semver: MAJOR | MINOR | PATCH
    scheme: str | None = None  # set or change the artifact's version scheme
    template: str | None = None  # for the template scheme


@dataclass(frozen=True)
class PromoteVersion:
    ref: VersionRef
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class WithdrawVersion:
    ref: VersionRef
    reason: str | None = None
    actor: str | None = None
