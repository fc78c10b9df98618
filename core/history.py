"""Read-side application service: artifacts and their versions, from the read model, or
folded from the event log when the caller asks for the past (asOf / atPosition)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.artifact import ArtifactState, Stage, VersionState
from core.commands import VersionRef
from core.errors import NotFound, Timeout, ValidationError
from core.events import VersionKey
from core.history_pg import ArtifactFilter, ArtifactSummary, HistoryReader, PromotionRecord
from core.services import ArtifactService


class ArtifactView(Protocol):
    """One artifact, however it was obtained."""

    namespace: str
    name: str
    kind: str

    async def latest(self) -> VersionState | None: ...
    async def production(self) -> VersionState | None: ...
    async def version(self, number: int | None, label: str | None) -> VersionState | None: ...
    async def versions(self, stage: Stage | None, after_number: int, limit: int
                       ) -> tuple[list[VersionState], int]: ...
    async def promotions(self) -> list[PromotionRecord]: ...
    async def archived(self) -> bool: ...


@dataclass
class FoldedArtifact:
    """The artifact as of some point, folded from its events."""

    state: ArtifactState

    @property
    def namespace(self) -> str:
        return self.state.namespace

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def kind(self) -> str:
        return self.state.kind or ""

    async def latest(self) -> VersionState | None:
        return self.state.latest

    async def production(self) -> VersionState | None:
        return self.state.version(self.state.production) if self.state.production else None

    async def version(self, number: int | None, label: str | None) -> VersionState | None:
        if number is not None:
            found = self.state.version(number)
            return found if found and label in (None, found.label) else None
        return next((v for v in self.state.versions if v.label == label), None)

    async def versions(self, stage: Stage | None, after_number: int, limit: int
                       ) -> tuple[list[VersionState], int]:
        chosen = [v for v in self.state.versions if stage is None or v.stage is stage]
        return [v for v in chosen if v.number > after_number][:limit], len(chosen)

    async def promotions(self) -> list[PromotionRecord]:
        return [PromotionRecord(self.namespace, self.name, e.number, e.previous, e.reason,
                                r.metadata.get("actor"), r.recorded_at, r.position)
                for r, e in self.state.promotions]

    async def archived(self) -> bool:
        return self.state.archived


@dataclass
class StoredArtifact:
    """The artifact as the version-history read model has it."""

    summary: ArtifactSummary
    reader: HistoryReader

    @property
    def namespace(self) -> str:
        return self.summary.namespace

    @property
    def name(self) -> str:
        return self.summary.name

    @property
    def kind(self) -> str:
        return self.summary.kind

    async def latest(self) -> VersionState | None:
        return await self.version(self.summary.latest_number, None)

    async def production(self) -> VersionState | None:
        number = self.summary.production_number
        return await self.version(number, None) if number else None

    async def version(self, number: int | None, label: str | None) -> VersionState | None:
        found = await self.reader.version(self.namespace, self.name, number=number, label=label)
        return found if found and label in (None, found.label) else None

    async def versions(self, stage: Stage | None, after_number: int, limit: int
                       ) -> tuple[list[VersionState], int]:
        return await self.reader.versions_page(self.namespace, self.name, stage=stage,
                                               after_number=after_number, limit=limit)

    async def promotions(self) -> list[PromotionRecord]:
        return await self.reader.promotions(self.namespace, self.name)

    async def archived(self) -> bool:
        return self.summary.archived


class HistoryQueries:
    def __init__(self, reader: HistoryReader, service: ArtifactService, *,
                 read_wait_seconds: float) -> None:
        self.reader = reader
        self.service = service
        self.read_wait_seconds = read_wait_seconds

    async def artifact(self, namespace: str, name: str, *, as_of: datetime | None = None,
                       at_position: int | None = None, min_position: int | None = None,
                       ) -> ArtifactView | None:
        """The artifact now (read model), or as it was at a time or position (folded)."""
        if as_of is not None or at_position is not None:
            if as_of is not None and as_of.tzinfo is None:
                raise ValidationError("asOf needs a time zone (e.g. 2026-01-31T12:00:00Z)")
            state = await self.service.load(namespace, name, to_position=at_position,
                                            to_time=as_of)
            return FoldedArtifact(state) if state.exists else None
        if min_position is not None:
            await self.wait_for(namespace, name, min_position)
        summary = await self.reader.artifact(namespace, name)
        return StoredArtifact(summary, self.reader) if summary else None

    async def artifacts(self, where: ArtifactFilter, *, after: tuple[str, str] | None,
                        limit: int) -> tuple[list[StoredArtifact], int]:
        summaries, total = await self.reader.artifacts(where, after=after, limit=limit)
        return [StoredArtifact(s, self.reader) for s in summaries], total

    async def versions_by_key(self, keys: list[VersionKey]) -> dict[VersionKey, VersionState]:
        """From the read model; what it has not applied yet (a version just written) comes
        from the event log, so a mutation's result can always name its parents."""
        found = await self.reader.versions_by_key(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            found.update({v.key: v for v in await self.service.versions(missing)})
        return found

    async def children(self, keys: list[VersionKey]) -> dict[VersionKey, list[VersionKey]]:
        return await self.reader.children(keys)

    async def resolve(self, ref: VersionRef) -> VersionState:
        """A version by reference, from the read model (the log for what it lacks)."""
        view = await self.artifact(ref.namespace, ref.name)
        found = None
        if view is not None:
            found = await (view.version(ref.number, ref.label)
                           if ref.number is not None or ref.label is not None
                           else view.latest())
        if found is None:
            state = await self.service.load(ref.namespace, ref.name)
            if not state.exists:
                raise NotFound(f"artifact {ref.namespace}/{ref.name} does not exist")
            found = state.resolve(ref)
        return found

    async def wait_for(self, namespace: str, name: str, min_position: int) -> None:
        """Return once the read model shows every event of this artifact up to
        ``min_position``; Timeout (retryable) if it has not within the bound."""
        target = await self.service.store.last_position(namespace, name, min_position)
        deadline = time.monotonic() + self.read_wait_seconds
        pause = 0.005
        while await self.reader.position(namespace, name) < target:
            if time.monotonic() > deadline:
                raise Timeout(f"the read model has not reached position {min_position} for "
                              f"{namespace}/{name} within {self.read_wait_seconds}s; retry",
                              position=min_position)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
