"""Ports: what the application services need from the outside world."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.content import Content
from core.events import NewEvent, RecordedEvent, VersionKey


@dataclass(frozen=True)
class IdempotencyClaim:
    """Binds an idempotency key to the version a request produced (or found)."""

    key: str
    fingerprint: str
    namespace: str
    name: str
    number: int
    position: int | None = None  # None: the position of the event appended in the same batch
    created: bool = True


@dataclass(frozen=True)
class AppendBatch:
    """Everything one ingest/promote/withdraw writes, stored atomically or not at all."""

    events: Sequence[NewEvent] = ()
    contents: Sequence[Content] = ()
    claims: Sequence[IdempotencyClaim] = field(default_factory=tuple)


class EventStore(Protocol):
    """The system of record: the event log, its content store and idempotency keys."""

    async def append(self, batch: AppendBatch) -> list[RecordedEvent]:
        """Store the batch atomically; raise StreamVersionTaken / IdempotencyKeyTaken on races."""
        ...

    async def load_stream(
        self, namespace: str, name: str, *, to_position: int | None = None,
        to_time: datetime | None = None, after_version: int = 0,
    ) -> list[RecordedEvent]:
        """One artifact's events in stream order: optionally only those after a stream
        version, or up to a position or time."""
        ...

    async def last_position(self, namespace: str, name: str, at_most: int) -> int:
        """The position of the artifact's last event at or below ``at_most`` (0: none)."""
        ...

    async def read_after(self, position: int, limit: int) -> list[RecordedEvent]:
        """Events with a global position above ``position``, in position order."""
        ...

    async def head_position(self) -> int:
        """The highest committed global position (0 for an empty log)."""
        ...

    async def find_claims(self, keys: Collection[str]) -> dict[str, IdempotencyClaim]:
        """The claims recorded for these idempotency keys (keys without one are absent)."""
        ...

    async def find_children(self, parent: VersionKey) -> list[VersionKey]:
        """Versions whose parents include ``parent``, in position order."""
        ...

    async def get_content(self, digest: str) -> bytes | None:
        """The stored bytes for a digest."""
        ...


class ContentStore(Protocol):
    """Content bytes addressed by their sha256 digest: written once, read many times, removed
    only by a purge. Writing a digest that is already stored is a no-op."""

    async def put_many(self, contents: Sequence[Content]) -> None:
        """Store every content not yet stored (idempotent per digest)."""
        ...

    async def get(self, digest: str) -> bytes | None:
        """The bytes for a digest, or None when they were never stored or were purged."""
        ...

    async def exists(self, digest: str) -> bool:
        """True when bytes are stored for the digest."""
        ...

    async def delete(self, digest: str) -> bool:
        """Remove the bytes for a digest (a purge); True when there were bytes to remove."""
        ...


class Publisher(Protocol):
    """Publishes recorded events to the message stream, exactly one message per event id."""

    async def publish(self, events: Sequence[RecordedEvent]) -> None:
        """Publish in order and wait for every acknowledgement."""
        ...
