"""Application services: load -> decide -> append. Every way in (GraphQL, HTTP, NATS, CLI)
goes through here, so validation, idempotency and limits are the same everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.artifact import (
    DEFAULT_KIND,
    ArtifactState,
    VersionState,
    decide_scheme,
    decide_withdraw,
    validate_name,
)
from core.batch import MAX_ATTEMPTS, BatchIngest, IngestOutcome, IngestResult
from core.commands import IngestVersion, PromoteVersion, WithdrawVersion
from core.content import Content, decode_content
from core.errors import (
    ArtifactlogError,
    Conflict,
    ContentGone,
    LimitExceeded,
    NotFound,
    StreamVersionTaken,
)
from core.events import DomainEvent, NewEvent, RecordedEvent, VersionKey
from core.group_commit import GroupCommit
from core.logs import current_correlation_id
from core.ports import AppendBatch, EventStore
from core.promotion import Promotions
from core.schema_registry import SchemaRegistry, SchemaVersion
from core.snapshots_loader import SnapshotLoader
from core.state_cache import StateCache
from core.streams_pg import StreamLoader

# Each replay step carries the whole folded state, so the answer grows with the square of
# the history; past this, ask for a slice.
MAX_REPLAY_STEPS = 2000


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
    def __init__(self, store: EventStore, *, max_content_bytes: int,
                 states: StateCache | None = None, schemas: SchemaRegistry | None = None,
                 streams: StreamLoader | None = None,
                 snapshots: SnapshotLoader | None = None) -> None:
        self.store = store
        self.max_content_bytes = max_content_bytes
        self.states = states if states is not None else StateCache()
        self.schemas = schemas
        # Reads many artifacts' new events in one query (bulk groups); without it, each
        # artifact of a group is loaded with its own query.
        self.streams = streams
        # Folds from snapshots kept next to the log (core/snapshots_loader.py); without a
        # snapshot table, a plain fold every time.
        self.snapshots = snapshots if snapshots is not None else SnapshotLoader(store, None)
        # Concurrent single ingests share one transaction (core/group_commit.py).
        self.group_commit = GroupCommit(self._ingest_group)

    async def ingest(self, cmd: IngestVersion) -> IngestResult:
        """Append a new version, or return the one an idempotency key or identical content
        already produced."""
        return (await self.group_commit.submit(cmd)).unwrap()

    async def _ingest_group(self, commands: Sequence[IngestVersion],
                            correlation_ids: Sequence[str | None]) -> list[IngestOutcome]:
        return await self._batch().run(commands, atomic=False, correlation_ids=correlation_ids)

    async def ingest_many(
        self, commands: Sequence[IngestVersion], *, atomic: bool
    ) -> list[IngestOutcome]:
        """Ingest commands as if one after another (core.batch). Atomic: one transaction, all
        or none, raising the first refusal; otherwise one outcome per command, each refusal
        affecting only its own command."""
        outcomes = await self._batch().run(commands, atomic=atomic)
        if atomic and outcomes and (error := outcomes[0].error) is not None:
            error.details.setdefault("index", outcomes[0].index)  # which command was refused
            raise error
        return outcomes

    def _batch(self) -> BatchIngest:
        schemas = _SchemaLookup(self.schemas) if self.schemas is not None else None

        async def prefetch(commands: Sequence[IngestVersion]
                           ) -> dict[tuple[str, str], ArtifactState]:
            keys = [k for c in commands
                    for k in ((c.namespace, c.name), *((p.namespace, p.name) for p in c.parents))]
            if schemas is None:
                return await self.load_many(keys)
            if all(c.kind for c in commands):  # the subjects are known without the states:
                # both reads at once, on two connections (one round trip less per ingest)
                states, _ = await asyncio.gather(self.load_many(keys),
                                                 schemas.prefetch(commands, None))
                return states
            states = await self.load_many(keys)
            await schemas.prefetch(commands, states)
            return states

        return BatchIngest(self.store, self.load, self.max_content_bytes,
                           schemas.check if schemas is not None else None, prefetch,
                           self.states.advance)

    async def load_many(self, keys: Iterable[tuple[str, str]]
                        ) -> dict[tuple[str, str], ArtifactState]:
        """``load`` of several artifacts with one query for all their new events (names
        that are not valid are left out: loading them alone gives the error)."""
        states: dict[tuple[str, str], ArtifactState] = {}
        for namespace, name in keys:
            if (namespace, name) in states:
                continue
            try:
                validate_name("namespace", namespace)
                validate_name("name", name)
            except ArtifactlogError:
                continue
            states[(namespace, name)] = (self.states.get(namespace, name)
                                         or ArtifactState(namespace, name))
        if self.streams is None:
            found = {key: await self.store.load_stream(*key, after_version=state.stream_version)
                     for key, state in states.items()}
        else:
            found = await self.streams.load_streams(
                {key: state.stream_version for key, state in states.items()})
        for key, events in found.items():
            state = states[key]
            for event in events:
                state.apply(event)
            if events and state.exists:  # unchanged states are in the cache already
                self.states.put(state)
        return states

    async def promote(self, cmd: PromoteVersion, *, override: bool = False) -> PromoteResult:
        """Make a version PRODUCTION (the previous one becomes SUPERSEDED) if the promotion
        policies pass, or an admin overrides them with a recorded reason."""
        return await Promotions(self).promote(cmd, override=override)

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

    async def set_version_scheme(self, namespace: str, name: str, kind: str,
                                 template: str | None, actor: str | None) -> int:
        """Change how the artifact's next versions are labelled; returns the position (the
        current one when the scheme is already in use)."""
        for _ in range(MAX_ATTEMPTS):
            state = await self.load_existing(namespace, name)
            decided = decide_scheme(state, kind, template)
            if decided is None:
                return state.position
            try:
                return (await self._append(state, decided, actor)).position
            except StreamVersionTaken:
                continue
        raise Conflict(f"{namespace}/{name} changed too often to set its scheme; try again")

    async def load(
        self, namespace: str, name: str, *, to_position: int | None = None,
        to_time: datetime | None = None,
    ) -> ArtifactState:
        """The artifact folded from its events (optionally as of a position or a time)."""
        validate_name("namespace", namespace)
        validate_name("name", name)
        if to_position is not None or to_time is not None:
            return await self.snapshots.load(namespace, name, to_position=to_position,
                                             to_time=to_time)
        state = self.states.get(namespace, name)
        if state is None:  # not folded in this process yet: from the newest snapshot
            state = await self.snapshots.load(namespace, name)
        else:
            for event in await self.store.load_stream(namespace, name,
                                                      after_version=state.stream_version):
                state.apply(event)
        if state.exists:
            self.states.put(state)
        return state

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
        if version.purged:  # even when another version still holds the same bytes
            raise ContentGone(f"the content of {version.key} was purged by retention",
                              version=str(version.key))
        data = await self.store.get_content(version.digest)
        if data is None:
            raise NotFound(f"content {version.digest} of {version.key} is not stored")
        return data

    async def _append(
        self, state: ArtifactState, event: DomainEvent, actor: str | None
    ) -> RecordedEvent:
        recorded = await self.store.append(AppendBatch([self.new_event(state, event, actor)]))
        state.apply(recorded[0])
        return recorded[0]

    @staticmethod
    def new_event(
        state: ArtifactState, event: DomainEvent, actor: str | None, *, offset: int = 1,
        **extra: Any,
    ) -> NewEvent:
        """The envelope for ``event``, ``offset`` stream versions after the state's."""
        metadata = {"actor": actor,
                    "correlationId": current_correlation_id() or str(uuid.uuid4()), **extra}
        return NewEvent(state.namespace, state.name, state.stream_version + offset, event,
                        {k: v for k, v in metadata.items() if v is not None})


class _SchemaLookup:
    """The schema check of one ingest call: the current schemas of a group's artifacts are
    read with one query (``prefetch``), and each command is checked against its own."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.current: dict[tuple[str, str, str | None], SchemaVersion | None] = {}

    async def prefetch(self, commands: Sequence[IngestVersion],
                       states: Mapping[tuple[str, str], ArtifactState] | None) -> None:
        """``states`` None: every command names its kind."""
        wanted = set()
        for cmd in commands:
            if states is None:
                wanted.add((cmd.namespace, cmd.name, cmd.kind))
            elif (state := states.get((cmd.namespace, cmd.name))) is not None:
                wanted.add((cmd.namespace, cmd.name, _kind(cmd, state)))  # a valid name
        wanted -= self.current.keys()
        if wanted:
            # A kind too long for a subject fails the lookup: check() then reports it.
            with contextlib.suppress(ArtifactlogError):
                self.current.update(await self.registry.current_for_many(wanted))

    async def check(self, cmd: IngestVersion, state: ArtifactState, content: Content) -> None:
        """Content must match the schema registered for the artifact (or its namespace and
        kind); a refusal is recorded for analytics by producer."""
        key = (cmd.namespace, cmd.name, _kind(cmd, state))
        if key not in self.current:  # e.g. the kind came from an earlier command of the batch
            self.current[key] = await self.registry.current_for(*key)
        current = self.current[key]
        if current is None:
            return  # no schema applies: the content is not even decoded
        data: Any = (decode_content(content.data, "json") if content.content_type == "json"
                     else None)
        await self.registry.check_content(
            current, cmd.namespace, cmd.name, content=data, content_type=content.content_type,
            producer=cmd.producer, actor=cmd.actor)


def _kind(cmd: IngestVersion, state: ArtifactState) -> str:
    return cmd.kind or state.kind or DEFAULT_KIND
