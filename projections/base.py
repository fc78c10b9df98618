"""The contract every projection implements; the runner and rebuild drive it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.events import RecordedEvent

Artifact = tuple[str, str]  # (namespace, name)


class Projection(Protocol):
    """A read model built from the event stream, one partition at a time.

    Events of one artifact always travel in one partition, in position order, and one worker
    at a time owns a partition; so a projection sees each artifact's events in order.
    """

    name: str
    min_batch_size: int
    """The fewest events a worker asks for per fetch (at least the configured
    projection batch size): a store that pays per write, not per row, wants more."""
    linger_seconds: float
    """How long a worker keeps collecting a batch that is not full once its first events
    have arrived (0: apply what one fetch returns). Trades that much freshness for fewer,
    larger writes to a store that pays per write."""

    async def setup(self) -> None:
        """Create or migrate the projection's tables (idempotent; DDL is versioned)."""
        ...

    async def checkpoint(self, partition: int) -> int:
        """The highest position applied in ``partition`` (0 when nothing has been)."""
        ...

    async def apply(
        self, partition: int, events: Sequence[RecordedEvent], *, replaying: bool = False
    ) -> None:
        """Apply ``events`` (all of ``partition``, ascending position) exactly once in effect.

        Events at or below the partition's checkpoint are skipped, and the checkpoint moves
        with the writes (atomically where the store allows), so a redelivered batch changes
        nothing. ``replaying`` (a rebuild after ``reset``) applies them regardless and only
        raises the checkpoint.
        """
        ...

    async def reset(self, artifacts: set[Artifact] | None = None) -> None:
        """Delete what was derived from all artifacts (None) or from the given ones."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
