"""Application services: load -> decide -> append. Every way in (GraphQL, HTTP, NATS, CLI)
goes through here, so validation, idempotency and limits are the same everywhere."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.artifact import (
    ArtifactState,
    VersionState,
    decide_ingest,
    decide_promote,
    decide_withdraw,
    fold,
    validate_ingest,
    validate_name,
)
from core.commands import IngestVersion, PromoteVersion, VersionRef, WithdrawVersion
from core.content import Content, canonical_json, encode_content
from core.errors import (
    Conflict,
    IdempotencyKeyTaken,
    LimitExceeded,
    NotFound,
    StreamVersionTaken,
)
from core.events import DomainEvent, NewEvent, RecordedEvent, VersionKey
from core.ports import AppendBatch, EventStore, IdempotencyClaim

MAX_METADATA_BYTES = 256 * 1024
# Without expectedVersion a lost race is retried by deciding again on the fresh state.
MAX_ATTEMPTS = 8
# Each replay step carries the whole folded state, so the answer grows with the square of
# the history; past this, ask for a slice.
MAX_REPLAY_STEPS = 2000


@dataclass(frozen=True)
class IngestResult:
    version: VersionState
    created: bool
    position: int


@dataclass(frozen=True)
class PromoteResult:
    version: VersionState
    previous: VersionState | None
    position: int


@dataclass(frozen=True)
class WithdrawResult:
    version: VersionState
    position: int


class ArtifactService:
    def __init__(self, store: EventStore, *, max_content_bytes: int) -> None:
        self.store = store
        self.max_content_bytes = max_content_bytes

    async def ingest(self, cmd: IngestVersion) -> IngestResult:
        """Append a new version, or return the one an idempotency key or identical content
        already produced."""
        validate_ingest(cmd)
        if cmd.metadata is not None and len(canonical_json(cmd.metadata)) > MAX_METADATA_BYTES:
            raise LimitExceeded(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        content = encode_content(
            content=cmd.content, text=cmd.text, content_base64=cmd.content_base64,
            media_type=cmd.media_type, max_bytes=self.max_content_bytes)
        parents = tuple([await self._resolve_parent(p) for p in cmd.parents])
        fingerprint = _fingerprint(cmd, content, parents)
        for attempt in range(MAX_ATTEMPTS):
            if cmd.idempotency_key and (claim := await self.store.find_claim(cmd.idempotency_key)):
                return await self._replayed(claim, fingerprint)
            state = await self.load(cmd.namespace, cmd.name)
            decided = decide_ingest(state, cmd, content, parents)
            try:
                return await self._store_ingest(state, cmd, content, fingerprint, decided)
            except IdempotencyKeyTaken:
                continue
            except StreamVersionTaken:
                if cmd.expected_version is not None or attempt == MAX_ATTEMPTS - 1:
                    latest = (await self.load(cmd.namespace, cmd.name)).latest_number
                    expected = cmd.expected_version
                    raise Conflict(
                        f"{cmd.namespace}/{cmd.name} is at version {latest}, expected "
                        f"{state.latest_number if expected is None else expected}",
                        current_version=latest) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _store_ingest(
        self, state: ArtifactState, cmd: IngestVersion, content: Content, fingerprint: str,
        decided: DomainEvent | VersionState,
    ) -> IngestResult:
        if isinstance(decided, VersionState):
            if cmd.idempotency_key:
                await self.store.append(AppendBatch(claims=[IdempotencyClaim(
                    cmd.idempotency_key, fingerprint, cmd.namespace, cmd.name, decided.number,
                    position=decided.position, created=False)]))
            return IngestResult(decided, created=False, position=decided.position)
        claims = [IdempotencyClaim(cmd.idempotency_key, fingerprint, cmd.namespace, cmd.name,
                                   state.latest_number + 1)] if cmd.idempotency_key else []
        event = self._new_event(state, decided, cmd.actor, producer=cmd.producer,
                                idempotency_key=cmd.idempotency_key)
        recorded = await self.store.append(AppendBatch([event], [content], claims))
        state.apply(recorded[0])
        latest = state.latest
        assert latest is not None
        return IngestResult(latest, created=True, position=recorded[0].position)

    async def _replayed(self, claim: IdempotencyClaim, fingerprint: str) -> IngestResult:
        if claim.fingerprint != fingerprint:
            raise Conflict(
                f"idempotency key {claim.key!r} was already used for a different request "
                f"(it produced {claim.namespace}/{claim.name}@{claim.number})")
        state = await self.load(claim.namespace, claim.name)
        version = state.version(claim.number)
        assert version is not None, "a claim always points at a stored version"
        return IngestResult(version, created=False, position=claim.position)

    async def promote(self, cmd: PromoteVersion) -> PromoteResult:
        """Make a version PRODUCTION; the previous production version becomes SUPERSEDED."""
        for _ in range(MAX_ATTEMPTS):
            state = await self.load_existing(cmd.ref.namespace, cmd.ref.name)
            decided = decide_promote(state, cmd.ref, cmd.reason)
            if decided is None:
                version = state.resolve(cmd.ref)
                recorded, _ = state.promotions[-1]
                return PromoteResult(version, None, recorded.position)
            previous = state.version(decided.previous) if decided.previous else None
            try:
                recorded = await self._append(state, decided, cmd.actor)
            except StreamVersionTaken:
                continue
            return PromoteResult(state.resolve(cmd.ref), previous, recorded.position)
        raise Conflict(f"{cmd.ref} changed too often to promote; try again")

    async def withdraw(self, cmd: WithdrawVersion) -> WithdrawResult:
        """Mark a DRAFT or SUPERSEDED version WITHDRAWN."""
        for _ in range(MAX_ATTEMPTS):
            state = await self.load_existing(cmd.ref.namespace, cmd.ref.name)
            decided = decide_withdraw(state, cmd.ref, cmd.reason)
            if decided is None:
                return WithdrawResult(state.resolve(cmd.ref), state.position)
            try:
                recorded = await self._append(state, decided, cmd.actor)
            except StreamVersionTaken:
                continue
            return WithdrawResult(state.resolve(cmd.ref), recorded.position)
        raise Conflict(f"{cmd.ref} changed too often to withdraw; try again")

    async def load(
        self, namespace: str, name: str, *, to_position: int | None = None,
        to_time: datetime | None = None,
    ) -> ArtifactState:
        """The artifact folded from its events (optionally as of a position or a time)."""
        validate_name("namespace", namespace)
        validate_name("name", name)
        events = await self.store.load_stream(namespace, name, to_position=to_position,
                                              to_time=to_time)
        return fold(namespace, name, events)

    async def replay(self, namespace: str, name: str, *, to_version: int | None = None,
                     to_position: int | None = None
                     ) -> list[tuple[RecordedEvent, ArtifactState]]:
        """Each event of the artifact with a snapshot of the state folded after it."""
        events = await self.store.load_stream(namespace, name, to_position=to_position)
        state, steps = ArtifactState(namespace, name), []
        for event in events:
            number = event.payload.get("number")
            if to_version is not None and event.type == "VersionIngested" and (
                    isinstance(number, int) and number > to_version):
                break
            if len(steps) == MAX_REPLAY_STEPS:
                raise LimitExceeded(f"replay is limited to {MAX_REPLAY_STEPS} events; narrow it"
                                    " with toVersion or toPosition")
            state.apply(event)
            steps.append((event, copy.deepcopy(state)))
        if not steps:
            raise NotFound(f"artifact {namespace}/{name} has no events to replay")
        return steps

    async def load_existing(self, namespace: str, name: str) -> ArtifactState:
        state = await self.load(namespace, name)
        if not state.exists:
            raise NotFound(f"artifact {namespace}/{name} does not exist")
        return state

    async def versions(self, keys: Iterable[VersionKey]) -> list[VersionState]:
        """The versions named by ``keys``, in the same order (missing ones left out)."""
        states: dict[tuple[str, str], ArtifactState] = {}
        found = []
        for key in keys:
            artifact = (key.namespace, key.name)
            if artifact not in states:
                states[artifact] = await self.load(*artifact)
            if (version := states[artifact].version(key.number)) is not None:
                found.append(version)
        return found

    async def children(self, key: VersionKey) -> list[VersionState]:
        """Versions that name ``key`` among their parents, oldest first."""
        return await self.versions(await self.store.find_children(key))

    async def content_of(self, version: VersionState) -> bytes:
        data = await self.store.get_content(version.digest)
        if data is None:
            raise NotFound(f"content {version.digest} of {version.key} is not stored")
        return data

    async def _append(
        self, state: ArtifactState, event: DomainEvent, actor: str | None
    ) -> RecordedEvent:
        recorded = await self.store.append(AppendBatch([self._new_event(state, event, actor)]))
        state.apply(recorded[0])
        return recorded[0]

    async def _resolve_parent(self, ref: VersionRef) -> VersionKey:
        state = await self.load(ref.namespace, ref.name)
        if not state.exists:
            raise NotFound(f"parent artifact {ref.namespace}/{ref.name} does not exist")
        return state.resolve(ref).key

    @staticmethod
    def _new_event(
        state: ArtifactState, event: DomainEvent, actor: str | None, **extra: Any
    ) -> NewEvent:
        metadata = {"actor": actor, "correlationId": str(uuid.uuid4()), **extra}
        return NewEvent(state.namespace, state.name, state.stream_version + 1, event,
                        {k: v for k, v in metadata.items() if v is not None})


def _fingerprint(cmd: IngestVersion, content: Content, parents: tuple[VersionKey, ...]) -> str:
    """What makes two requests 'the same' for an idempotency key."""
    identity: Mapping[str, Any] = {
        "namespace": cmd.namespace, "name": cmd.name, "kind": cmd.kind, "digest": content.digest,
        "mediaType": content.media_type, "metadata": cmd.metadata or {},
        "parents": [str(p) for p in parents], "producer": cmd.producer, "force": cmd.force,
    }
    return hashlib.sha256(canonical_json(identity)).hexdigest()
