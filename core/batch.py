"""Ingesting versions, one or many: the one decision path behind ``ArtifactService.ingest`` and
``ArtifactService.ingest_many``, so validation, limits and error messages cannot drift apart.

Meaning. A batch means what ingesting its commands one after another, in order, would mean.
Each command is decided against the stored state *plus* what earlier commands of the batch
decided: versions of one artifact get consecutive numbers; a parent reference (by number,
label, or latest) may name a version an earlier command of the batch creates; ``latest`` and
``expectedVersion`` count the batch's earlier versions; identical content dedupes against
them; an idempotency key used twice returns the first command's result (``created=False``).
A reference to a version that only a *later* command creates does not resolve, exactly as
when ingesting one by one: list parents before their children.

Writing. ``atomic``: the whole batch is one AppendBatch, so one transaction; the first
refusal in command order refuses the batch and nothing is written. Bulk: commands are decided
in groups of BULK_GROUP_SIZE and each group's accepted commands become one AppendBatch (one
transaction and one turn of the append lock per group, which is the throughput win); a refused
command gets its own error and no other command is affected. Either way a lost race (another
writer took a stream version or an idempotency key first) rolls the transaction back and the
batch or group is decided again on fresh state, as ``ingest`` always did.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from core.artifact import ArtifactState, VersionState, decide_ingest, validate_ingest
from core.commands import IngestVersion, VersionRef
from core.content import Content, canonical_json, decode_content, encode_content
from core.diff import semver_bump
from core.errors import (
    ArtifactlogError,
    Conflict,
    IdempotencyKeyTaken,
    LimitExceeded,
    NotFound,
    StreamVersionTaken,
    ValidationError,
)
from core.events import (
    NewEvent,
    RecordedEvent,
    VersionIngested,
    VersionKey,
    to_payload,
)
from core.logs import current_correlation_id
from core.ports import AppendBatch, EventStore, IdempotencyClaim

MAX_METADATA_BYTES = 256 * 1024
# Without expectedVersion a lost race is retried by deciding again on the fresh state.
MAX_ATTEMPTS = 12
# Losers of a race that retry at once collide again; random pauses that grow with each lost
# attempt spread them out. On a starved CPU an attempt itself takes tens of milliseconds, so
# the pauses must grow past that (up to MAX_RETRY_PAUSE_SECONDS) or nine writers of one
# artifact keep colliding until they give up (seen in CI under load).
RETRY_PAUSE_SECONDS = 0.002
MAX_RETRY_PAUSE_SECONDS = 0.5
# Commands per bulk transaction: large enough to amortise the commit and the append lock,
# small enough that a lost race redoes little work and the lock is held briefly.
BULK_GROUP_SIZE = 100
# One atomic batch is one transaction holding the append lock; keep it bounded.
MAX_ATOMIC_COMMANDS = 1000

Loader = Callable[[str, str], Awaitable[ArtifactState]]
# Loads, in one go, the states of the artifacts a group's commands name (their own and their
# parents'), keyed by (namespace, name): one query per group instead of one per command.
Prefetch = Callable[[Sequence[IngestVersion]], Awaitable[dict[tuple[str, str], ArtifactState]]]
# Told the events each transaction committed (the service folds them into its state cache,
# so the next group does not read back what this one wrote).
Committed = Callable[[Sequence[RecordedEvent]], None]
# Checks content against the artifact's registered schema; raises to refuse the command.
ContentCheck = Callable[[IngestVersion, ArtifactState, Content], Awaitable[None]]


@dataclass(frozen=True)
class IngestResult:
    version: VersionState
    created: bool
    position: int


@dataclass(frozen=True)
class IngestOutcome:
    """What one command of a batch came to: its result, or the error that refused it."""

    index: int
    result: IngestResult | None = None
    error: ArtifactlogError | None = None

    def unwrap(self) -> IngestResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def validated_content(cmd: IngestVersion, max_content_bytes: int) -> Content:
    """Every check that needs nothing but the command, then its encoded content."""
    validate_ingest(cmd)
    if cmd.metadata is not None:
        encoded = canonical_json(cmd.metadata)
        if len(encoded) > MAX_METADATA_BYTES:
            raise LimitExceeded(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        # Postgres jsonb cannot store NUL characters. JSON writes NUL as \u0000, so
        # metadata without that sequence in its encoding has none (the walk is the exact
        # check: the sequence also appears for an escaped backslash followed by "u0000").
        if b"\\u0000" in encoded and _has_nul(cmd.metadata):
            raise ValidationError("metadata must not contain NUL characters (\\u0000)")
    return encode_content(
        content=cmd.content, text=cmd.text, content_base64=cmd.content_base64,
        media_type=cmd.media_type, max_bytes=max_content_bytes)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


@dataclass(frozen=True)
class _Item:
    index: int
    cmd: IngestVersion
    content: Content | None = None
    error: ArtifactlogError | None = None
    correlation_id: str | None = None  # its own request's, when requests share a call


@dataclass(frozen=True)
class _Decision:
    key: VersionKey  # the version the command's result is
    created: bool


class BatchIngest:
    """Decides and appends one call's commands (see the module docstring)."""

    def __init__(self, store: EventStore, load: Loader, max_content_bytes: int,
                 check: ContentCheck | None = None, prefetch: Prefetch | None = None,
                 committed: Committed | None = None) -> None:
        self.store = store
        self.load = load
        self.max_content_bytes = max_content_bytes
        self.check = check
        self.prefetch = prefetch
        self.committed = committed
        # One id for every event of the call: "these were ingested together"; the request's
        # id when there is one, so logs and events tie up (core.logs).
        self.correlation_id = current_correlation_id() or str(uuid.uuid4())

    async def run(self, commands: Sequence[IngestVersion], *, atomic: bool,
                  correlation_ids: Sequence[str | None] | None = None) -> list[IngestOutcome]:
        """Outcomes in command order. Atomic: every result, or only the first refusal.
        ``correlation_ids``: each command's own (group commit of separate requests)."""
        items = [self._item(i, cmd) for i, cmd in enumerate(commands)]
        if correlation_ids is not None:
            items = [replace(item, correlation_id=cid)
                     for item, cid in zip(items, correlation_ids, strict=True)]
        if atomic:
            return await self._atomic(items)
        outcomes: list[IngestOutcome] = []
        for start in range(0, len(items), BULK_GROUP_SIZE):
            outcomes += await self._group(items[start:start + BULK_GROUP_SIZE])
        return outcomes

    def _item(self, index: int, cmd: IngestVersion) -> _Item:
        try:
            return _Item(index, cmd, content=validated_content(cmd, self.max_content_bytes))
        except ArtifactlogError as exc:
            return _Item(index, cmd, error=exc)

    async def _atomic(self, items: list[_Item]) -> list[IngestOutcome]:
        if len(items) > MAX_ATOMIC_COMMANDS:
            return [IngestOutcome(items[MAX_ATOMIC_COMMANDS].index, error=LimitExceeded(
                f"an atomic batch holds at most {MAX_ATOMIC_COMMANDS} commands, got {len(items)}"
            ))]
        for attempt in range(MAX_ATTEMPTS):
            plan = await self._plan(items)
            decisions = []
            for item in items:
                try:
                    decisions.append(await plan.decide_item(item))
                except ArtifactlogError as exc:
                    return [IngestOutcome(item.index, error=exc)]
            try:
                recorded = await plan.commit()
            except (StreamVersionTaken, IdempotencyKeyTaken):
                await _pause(attempt)
                continue
            self._committed(recorded)
            return [IngestOutcome(item.index, plan.result(decision, recorded))
                    for item, decision in zip(items, decisions, strict=True)]
        return [IngestOutcome(items[0].index, error=_too_contended(items))]

    async def _group(self, items: list[_Item]) -> list[IngestOutcome]:
        for attempt in range(MAX_ATTEMPTS):
            plan = await self._plan(items)
            decisions = [await plan.try_decide(item) for item in items]
            try:
                recorded = await plan.commit()
            except (StreamVersionTaken, IdempotencyKeyTaken):
                await _pause(attempt)
                continue
            self._committed(recorded)
            return [IngestOutcome(item.index, error=d) if isinstance(d, ArtifactlogError)
                    else IngestOutcome(item.index, plan.result(d, recorded))
                    for item, d in zip(items, decisions, strict=True)]
        # A group that keeps losing races (a hot artifact) goes on one command per
        # transaction, each with its own retries, so the lines still make progress in order.
        return [(await self._atomic([item]))[0] for item in items]

    def _committed(self, recorded: Mapping[VersionKey, RecordedEvent]) -> None:
        if self.committed is not None and recorded:
            self.committed(sorted(recorded.values(), key=lambda r: r.position))

    async def _plan(self, items: Sequence[_Item]) -> _Plan:
        """A fresh plan, with the states its commands need read at once when possible."""
        plan = _Plan(self.store, self.load, self.correlation_id, self.check)
        commands = [item.cmd for item in items if item.error is None]
        keys = {c.idempotency_key for c in commands if c.idempotency_key}
        if self.prefetch is not None and commands:
            states, _ = await asyncio.gather(self.prefetch(commands), plan.read_claims(keys))
            plan.states.update(states)
        elif keys:
            await plan.read_claims(keys)
        return plan


class _Plan:
    """One attempt at a batch or group: the states it read, and what its commands decided so
    far, applied provisionally to those states so that later commands see them."""

    def __init__(self, store: EventStore, load: Loader, correlation_id: str,
                 check: ContentCheck | None = None) -> None:
        self.store = store
        self.load = load
        self.correlation_id = correlation_id
        self.check = check
        self.states: dict[tuple[str, str], ArtifactState] = {}
        self.claims: dict[str, IdempotencyClaim] = {}  # keys first used in this plan
        # What the store holds for the keys the plan's commands carry (None: no claim), read
        # for the whole plan at once (a query per keyed command cost a round trip per line).
        self.stored_claims: dict[str, IdempotencyClaim | None] = {}
        self.created: set[VersionKey] = set()
        self.events: list[NewEvent] = []
        self.contents: list[Content] = []

    async def try_decide(self, item: _Item) -> _Decision | ArtifactlogError:
        try:
            return await self.decide_item(item)
        except ArtifactlogError as exc:
            return exc

    async def decide_item(self, item: _Item) -> _Decision:
        if item.error is not None:
            raise item.error
        assert item.content is not None
        return await self.decide(item.cmd, item.content, item.correlation_id)

    async def decide(self, cmd: IngestVersion, content: Content,
                     correlation_id: str | None = None) -> _Decision:
        """Refusals raise before the plan changes, so a refused command leaves no trace."""
        parents = tuple([await self._parent(ref) for ref in cmd.parents])
        # Only a key needs it (hashing canonical JSON per line showed in bulk profiles).
        fingerprint = _fingerprint(cmd, content, parents) if cmd.idempotency_key else ""
        if cmd.idempotency_key and (claim := await self._claim(cmd.idempotency_key)):
            return await self._replayed(claim, fingerprint)
        state = await self.state(cmd.namespace, cmd.name)
        if self.check is not None:  # after the key replay: an accepted retry is not re-judged
            await self.check(cmd, state, content)
        decided = decide_ingest(state, cmd, content, parents,
                                derived_bump=await self._derived_bump(state, cmd, content))
        position: int | None = None  # a version of this plan: the append fills it in
        if isinstance(decided, VersionState):
            key, created = decided.key, False
            if key not in self.created:
                position = decided.position
        else:
            key, created = self._add(state, cmd, content, decided, correlation_id), True
        if cmd.idempotency_key:
            self.claims[cmd.idempotency_key] = IdempotencyClaim(
                cmd.idempotency_key, fingerprint, key.namespace, key.name, key.number,
                position=position, created=created)
        return _Decision(key, created)

    async def state(self, namespace: str, name: str) -> ArtifactState:
        if (namespace, name) not in self.states:
            self.states[(namespace, name)] = await self.load(namespace, name)
        return self.states[(namespace, name)]

    async def commit(self) -> dict[VersionKey, RecordedEvent]:
        """Append everything the plan decided as one AppendBatch: one transaction."""
        if not self.events and not self.claims:
            return {}
        recorded = await self.store.append(
            AppendBatch(self.events, self.contents, list(self.claims.values())))
        return {VersionKey(r.namespace, r.name, r.payload["number"]): r for r in recorded}

    def result(self, decision: _Decision, recorded: Mapping[VersionKey, RecordedEvent]
               ) -> IngestResult:
        state = self.states[(decision.key.namespace, decision.key.name)]
        version = state.version(decision.key.number)
        assert version is not None, "a decision names a version the plan read or created"
        if (event := recorded.get(decision.key)) is not None:
            version = replace(version, position=event.position, created_at=event.recorded_at)
        return IngestResult(version, decision.created, version.position)

    async def _derived_bump(self, state: ArtifactState, cmd: IngestVersion,
                            content: Content) -> str:
        """For a semver artifact ingested without a bump: what the content change means."""
        latest = state.latest
        scheme = cmd.scheme or state.scheme.kind
        if (scheme != "semver" or cmd.bump or latest is None or latest.digest == content.digest
                or latest.content_type != "json" or content.content_type != "json"):
            return "PATCH"
        earlier = next((c.data for c in self.contents if c.digest == latest.digest), None)
        data = earlier if earlier is not None else await self.store.get_content(latest.digest)
        if data is None:
            return "PATCH"
        return semver_bump(decode_content(data, "json"), decode_content(content.data, "json"))

    async def _parent(self, ref: VersionRef) -> VersionKey:
        state = await self.state(ref.namespace, ref.name)
        if not state.exists:
            raise NotFound(f"parent artifact {ref.namespace}/{ref.name} does not exist")
        return state.resolve(ref).key

    async def read_claims(self, keys: Collection[str]) -> None:
        found = await self.store.find_claims(keys)
        self.stored_claims.update({key: found.get(key) for key in keys})

    async def _claim(self, key: str) -> IdempotencyClaim | None:
        if key in self.claims:
            return self.claims[key]
        if key not in self.stored_claims:
            await self.read_claims([key])
        return self.stored_claims[key]

    async def _replayed(self, claim: IdempotencyClaim, fingerprint: str) -> _Decision:
        if claim.fingerprint != fingerprint:
            raise Conflict(
                f"idempotency key {claim.key!r} was already used for a different request "
                f"(it produced {claim.namespace}/{claim.name}@{claim.number})")
        state = await self.state(claim.namespace, claim.name)  # the result is read from it
        if state.version(claim.number) is None and not any(
                (k.namespace, k.name) == (claim.namespace, claim.name) for k in self.created):
            # Prefetched before the claim's request committed: read the artifact again. (With
            # versions of this plan on it, the append will lose the race and start over.)
            self.states[(claim.namespace, claim.name)] = await self.load(claim.namespace,
                                                                         claim.name)
        return _Decision(VersionKey(claim.namespace, claim.name, claim.number), created=False)

    def _add(self, state: ArtifactState, cmd: IngestVersion, content: Content,
             event: VersionIngested, correlation_id: str | None = None) -> VersionKey:
        metadata = {"actor": cmd.actor, "correlationId": correlation_id or self.correlation_id,
                    "producer": cmd.producer, "idempotencyKey": cmd.idempotency_key}
        new = NewEvent(state.namespace, state.name, state.stream_version + 1, event,
                       {k: v for k, v in metadata.items() if v is not None})
        self.events.append(new)
        self.contents.append(content)
        state.apply(_provisional(new))
        key = VersionKey(state.namespace, state.name, event.number)
        self.created.add(key)
        return key


async def _pause(attempt: int) -> None:
    if attempt < MAX_ATTEMPTS - 1:  # no pause before giving up
        await asyncio.sleep(random.uniform(
            0, min(RETRY_PAUSE_SECONDS * 2 ** attempt, MAX_RETRY_PAUSE_SECONDS)))


def _provisional(new: NewEvent) -> RecordedEvent:
    # Position 0 and this clock stand in until the log assigns the real ones; results are
    # patched from the recorded events after the append (``_Plan.result``). It hands
    # ``ArtifactState.apply`` the domain event it was made from instead of rebuilding an equal
    # one from the payload (``from_payload`` per decided line showed in bulk ingest profiles).
    return RecordedEvent(
        position=0, event_id=new.event_id, namespace=new.namespace, name=new.name,
        stream_version=new.stream_version, type=new.type, payload=to_payload(new.event),
        metadata=new.metadata, recorded_at=datetime.now(UTC)).decoding_to(new.event)


def _too_contended(items: Sequence[_Item]) -> Conflict:
    names = sorted({f"{i.cmd.namespace}/{i.cmd.name}" for i in items})
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return Conflict(f"{shown} changed too often to ingest; try again")


def _fingerprint(cmd: IngestVersion, content: Content, parents: tuple[VersionKey, ...]) -> str:
    """What makes two requests 'the same' for an idempotency key."""
    identity: Mapping[str, Any] = {
        "namespace": cmd.namespace, "name": cmd.name, "kind": cmd.kind, "digest": content.digest,
        "mediaType": content.media_type, "metadata": cmd.metadata or {},
        "parents": [str(p) for p in parents], "producer": cmd.producer, "force": cmd.force,
    }
    return hashlib.sha256(canonical_json(identity)).hexdigest()
