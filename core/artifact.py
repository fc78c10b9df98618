"""The artifact aggregate: state folded from events, and the rules that decide new events.

``ArtifactState.apply`` folds one recorded event; the ``decide_*`` functions look at a state and
a command and return the events to append (or raise a domain error). No I/O happens here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from sys import intern
from typing import TYPE_CHECKING, Any

from core.commands import IngestVersion, VersionRef
from core.content import Content
from core.errors import Conflict, NotFound, PolicyRefused, StageRuleViolation, ValidationError
from core.events import (
    ArtifactArchived,
    ArtifactUnarchived,
    ContentPurged,
    DomainEvent,
    PromotionApproved,
    PromotionPolicySet,
    PromotionRequested,
    RecordedEvent,
    VersionIngested,
    VersionKey,
    VersionPromoted,
    VersionSchemeSet,
    VersionWithdrawn,
)
from core.version_schemes import SEQUENCE, VersionScheme, check_bump, next_label, scheme_of

if TYPE_CHECKING:
    from core.policies import PolicyCheck

# Namespaces and names become NATS subject tokens and URL path segments, so they are kept to
# characters that need no escaping anywhere.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MAX_NAME_LENGTH = 128
MAX_KIND_LENGTH = 64
DEFAULT_KIND = "artifact"


class Stage(StrEnum):
    DRAFT = "DRAFT"
    PRODUCTION = "PRODUCTION"
    SUPERSEDED = "SUPERSEDED"
    WITHDRAWN = "WITHDRAWN"


@dataclass(frozen=True)
class VersionState:
    namespace: str
    name: str
    number: int
    label: str
    stage: Stage
    digest: str
    size: int
    media_type: str | None
    content_type: str
    metadata: Mapping[str, Any]
    parents: tuple[VersionKey, ...]
    producer: str | None
    created_at: datetime
    position: int
    purged: bool = False  # retention removed its content bytes (ContentPurged)

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.namespace, self.name, self.number)


@dataclass
class ArtifactState:
    """Mutable while folding (an artifact can have many thousands of versions, and copying
    an immutable state per event would make a fold quadratic)."""

    namespace: str
    name: str
    kind: str | None = None
    stream_version: int = 0
    position: int = 0
    versions: list[VersionState] = field(default_factory=list)
    production: int | None = None
    promotions: list[tuple[RecordedEvent, VersionPromoted]] = field(default_factory=list)
    scheme: VersionScheme = SEQUENCE
    rules: tuple[Mapping[str, Any], ...] = ()  # the artifact's promotion policy
    # Promotion requests and approvals by version number: (digest, actor); an approval binds
    # to the exact content that was requested, and both end with the promotion.
    requests: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    approvals: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    archived: bool = False  # hidden from listings (ArtifactArchived), history kept

    def copy(self) -> ArtifactState:
        """Independent lists (versions themselves are immutable and shared)."""
        return replace(self, versions=list(self.versions), promotions=list(self.promotions),
                       requests=dict(self.requests), approvals=dict(self.approvals))

    @property
    def exists(self) -> bool:
        return bool(self.versions)

    @property
    def latest(self) -> VersionState | None:
        return self.versions[-1] if self.versions else None

    @property
    def latest_number(self) -> int:
        return len(self.versions)

    def version(self, number: int) -> VersionState | None:
        return self.versions[number - 1] if 1 <= number <= len(self.versions) else None

    def resolve(self, ref: VersionRef) -> VersionState:
        """The version a reference names; NotFound names what was asked for."""
        if ref.number is not None:
            found = self.version(ref.number)
        elif ref.label is not None:
            found = next((v for v in self.versions if v.label == ref.label), None)
        else:
            found = self.latest
        if found is None:
            raise NotFound(f"version {ref} does not exist")
        return found

    def apply(self, recorded: RecordedEvent) -> ArtifactState:
        event = recorded.event
        self.stream_version = recorded.stream_version
        self.position = recorded.position
        if isinstance(event, VersionIngested):
            self.kind = self.kind or event.kind
            if event.scheme is not None:
                self.scheme = VersionScheme.from_json(event.scheme)
            self.versions.append(_new_version(self, event, recorded))
        elif isinstance(event, VersionSchemeSet):
            self.scheme = VersionScheme(event.kind, event.template)
        elif isinstance(event, PromotionPolicySet):
            self.rules = event.rules
        elif isinstance(event, PromotionRequested):
            self.requests[event.number] = (event.digest, recorded.metadata.get("actor"))
        elif isinstance(event, PromotionApproved):
            self.approvals[event.number] = (event.digest, recorded.metadata.get("actor"))
        elif isinstance(event, VersionPromoted):
            if self.production is not None:
                self._set_stage(self.production, Stage.SUPERSEDED)
            self._set_stage(event.number, Stage.PRODUCTION)
            self.production = event.number
            self.promotions.append((recorded, event))
            self.requests.pop(event.number, None)
            self.approvals.pop(event.number, None)
        elif isinstance(event, VersionWithdrawn):
            self._set_stage(event.number, Stage.WITHDRAWN)
        elif isinstance(event, ContentPurged):
            self.versions[event.number - 1] = replace(self.versions[event.number - 1],
                                                      purged=True)
        elif isinstance(event, ArtifactArchived | ArtifactUnarchived):
            self.archived = isinstance(event, ArtifactArchived)
        return self

    def _set_stage(self, number: int, stage: Stage) -> None:
        self.versions[number - 1] = replace(self.versions[number - 1], stage=stage)


def fold(namespace: str, name: str, events: Iterable[RecordedEvent]) -> ArtifactState:
    state = ArtifactState(namespace, name)
    for recorded in events:
        state.apply(recorded)
    return state


def _new_version(
    state: ArtifactState, event: VersionIngested, recorded: RecordedEvent
) -> VersionState:
    return VersionState(
        namespace=state.namespace, name=state.name, number=event.number,
        label=intern(event.label), stage=Stage.DRAFT, digest=event.digest, size=event.size,
        media_type=shared(event.media_type), content_type=intern(event.content_type),
        metadata=version_metadata(state.versions, event.metadata), parents=event.parents,
        producer=shared(event.producer), created_at=recorded.recorded_at,
        position=recorded.position,
    )


# A state holds every version of its artifact, and the state cache holds many states: the
# strings versions repeat (media and content types, producers, labels across artifacts,
# metadata keys and short values) are kept once per process rather than once per version,
# about a third of a version's memory.
SHARED_VALUE_LENGTH = 32


def shared(text: str | None) -> str | None:
    return None if text is None else intern(text)


def version_metadata(earlier: Sequence[VersionState], metadata: Mapping[str, Any]
                     ) -> Mapping[str, Any]:
    """What a new version keeps as its metadata. Metadata often repeats from one version to
    the next (owner, team, schema): equal metadata, keys in the same order, is the previous
    version's object (read-only, as every version's is)."""
    if earlier:
        previous = earlier[-1].metadata
        if previous == metadata and list(previous) == list(metadata):
            return previous
    return {intern(key): intern(value)
            if type(value) is str and len(value) <= SHARED_VALUE_LENGTH else value
            for key, value in metadata.items()}


def validate_name(what: str, value: str) -> None:
    if not value or len(value) > MAX_NAME_LENGTH or not NAME_PATTERN.match(value):
        raise ValidationError(
            f"{what} {value!r} is invalid: use 1-{MAX_NAME_LENGTH} letters, digits, '_' or '-',"
            " starting with a letter or digit"
        )


def validate_ingest(cmd: IngestVersion) -> None:
    """Checks that need nothing but the command itself."""
    validate_name("namespace", cmd.namespace)
    validate_name("name", cmd.name)
    if cmd.kind is not None and not (0 < len(cmd.kind) <= MAX_KIND_LENGTH):
        raise ValidationError(f"kind must be 1-{MAX_KIND_LENGTH} characters")
    if cmd.metadata is not None and not isinstance(cmd.metadata, Mapping):
        raise ValidationError("metadata must be a JSON object")
    if cmd.expected_version is not None and cmd.expected_version < 0:
        raise ValidationError("expectedVersion must be 0 (new artifact) or a version number")
    if cmd.idempotency_key is not None and not (0 < len(cmd.idempotency_key) <= 256):
        raise ValidationError("idempotencyKey must be 1-256 characters")
    for field_name, value in (("kind", cmd.kind), ("producer", cmd.producer),
                              ("idempotencyKey", cmd.idempotency_key)):
        if value is not None and "\x00" in value:
            raise ValidationError(f"{field_name} must not contain NUL characters")
    check_bump(cmd.bump)
    if cmd.scheme is not None:
        scheme_of(cmd.scheme, cmd.template)
    elif cmd.template is not None:
        raise ValidationError("labelTemplate goes with versionScheme: template")


def decide_ingest(
    state: ArtifactState, cmd: IngestVersion, content: Content, parents: tuple[VersionKey, ...],
    *, now: datetime | None = None, derived_bump: str = "PATCH",
) -> VersionIngested | VersionState:
    """The new version's event, or the latest version when the content is unchanged.

    ``now`` dates calver labels; ``derived_bump`` is what the content change means for a
    semver artifact when the command names no bump."""
    if cmd.expected_version is not None and cmd.expected_version != state.latest_number:
        raise Conflict(
            f"{state.namespace}/{state.name} is at version {state.latest_number}, "
            f"expected {cmd.expected_version}",
            current_version=state.latest_number,
        )
    kind = cmd.kind or state.kind or DEFAULT_KIND
    if state.kind is not None and cmd.kind is not None and cmd.kind != state.kind:
        raise ValidationError(
            f"{state.namespace}/{state.name} is of kind {state.kind!r}, not {cmd.kind!r}")
    latest = state.latest
    if latest is not None and not cmd.force and latest.digest == content.digest:
        return latest
    number = state.latest_number + 1
    scheme = (scheme_of(cmd.scheme, cmd.template) if cmd.scheme is not None
              else state.scheme)
    metadata = dict(cmd.metadata or {})
    label = next_label(scheme, number=number, digest=content.digest, metadata=metadata,
                       previous_labels=[v.label for v in state.versions],
                       bump=check_bump(cmd.bump) or derived_bump,
                       now=now or datetime.now(UTC))
    return VersionIngested(
        number=number, kind=kind, label=label, digest=content.digest,
        size=content.size, media_type=content.media_type, content_type=content.content_type,
        metadata=metadata, parents=parents, producer=cmd.producer,
        scheme=scheme.to_json() if scheme != state.scheme else None,
    )


def decide_scheme(state: ArtifactState, kind: str, template: str | None
                  ) -> VersionSchemeSet | None:
    """None when the artifact already uses that scheme."""
    scheme = scheme_of(kind, template)
    if scheme == state.scheme:
        return None
    return VersionSchemeSet(scheme.kind, scheme.template)


def decide_promote(
    state: ArtifactState, ref: VersionRef, reason: str | None, *,
    checks: Sequence[PolicyCheck] = (), override: bool = False, approved_by: str | None = None,
) -> VersionPromoted | None:
    """None when the version already is in production (promote is idempotent). ``checks``
    are the policies' verdicts; any failure refuses the promotion unless an admin overrides
    it, which needs a reason and is recorded."""
    version = promotable(state, ref)
    if version is None:
        return None
    failed = [c for c in checks if not c.passed]
    if failed and not override:
        raise PolicyRefused(
            f"promoting {version.key} is refused by policy: "
            + "; ".join(f"{c.rule} ({c.reason})" for c in failed),
            failed=[c.rule for c in failed])
    if override and not reason:
        raise ValidationError("an override needs a reason; it is recorded with the promotion")
    return VersionPromoted(number=version.number, previous=state.production, reason=reason,
                           override=override and bool(failed), approved_by=approved_by)


def promotable(state: ArtifactState, ref: VersionRef) -> VersionState | None:
    """The version to promote, None if it already is PRODUCTION; refuses WITHDRAWN."""
    version = state.resolve(ref)
    if version.stage is Stage.PRODUCTION:
        return None
    if version.stage is Stage.WITHDRAWN:
        raise StageRuleViolation(
            f"{version.key} is withdrawn and can no longer be promoted", stage=version.stage)
    if version.purged:
        raise StageRuleViolation(
            f"{version.key} had its content purged by retention and can no longer be promoted",
            stage=version.stage)
    return version


def decide_request(state: ArtifactState, ref: VersionRef, reason: str | None
                   ) -> PromotionRequested | None:
    version = promotable(state, ref)
    if version is None:
        return None
    return PromotionRequested(version.number, version.digest, reason)


def approval_for(state: ArtifactState, ref: VersionRef, approver: str | None
                 ) -> PromotionApproved:
    """An approval of the pending request for exactly this version, by someone else."""
    version = state.resolve(ref)
    request = state.requests.get(version.number)
    if request is None:
        raise StageRuleViolation(f"{version.key} has no pending promotion request; "
                                 "requestPromotion first")
    digest, requester = request
    if digest != version.digest:
        raise StageRuleViolation(f"the request for {version.key} was for other content")
    if approver is None or approver == requester:
        raise PolicyRefused(f"{version.key} must be approved by a second actor, not the "
                            f"requester {requester!r}", failed=["approval"])
    return PromotionApproved(version.number, version.digest)


def decide_withdraw(
    state: ArtifactState, ref: VersionRef, reason: str | None
) -> VersionWithdrawn | None:
    """None when the version is already withdrawn."""
    version = state.resolve(ref)
    if version.stage is Stage.WITHDRAWN:
        return None
    if version.stage is Stage.PRODUCTION:
        raise StageRuleViolation(
            f"{version.key} is the production version; promote another version before "
            "withdrawing it", stage=version.stage)
    return VersionWithdrawn(number=version.number, reason=reason)


def purgeable(state: ArtifactState, now: datetime, older_than: timedelta
              ) -> list[VersionState]:
    """Drafts never promoted (DRAFT, or WITHDRAWN straight from DRAFT) created before
    ``now - older_than`` and not purged yet. A version that was ever in production keeps its
    bytes: a rollback may need them."""
    if older_than < timedelta(0):
        raise ValidationError("retention days must be 0 or more")
    promoted = {event.number for _, event in state.promotions}
    cutoff = now - older_than
    return [v for v in state.versions
            if v.stage in (Stage.DRAFT, Stage.WITHDRAWN) and v.number not in promoted
            and not v.purged and v.created_at <= cutoff]


def decide_purge(state: ArtifactState, now: datetime, older_than: timedelta,
                 reason: str | None) -> list[ContentPurged]:
    """One ContentPurged per purgeable version, oldest first (none: nothing to purge)."""
    return [ContentPurged(v.number, v.digest, reason)
            for v in purgeable(state, now, older_than)]


def decide_archive(state: ArtifactState, archive: bool, reason: str | None
                   ) -> ArtifactArchived | ArtifactUnarchived | None:
    """None when the artifact already is in the asked state (idempotent)."""
    if not state.exists:
        raise NotFound(f"artifact {state.namespace}/{state.name} does not exist")
    if state.archived == archive:
        return None
    return ArtifactArchived(reason) if archive else ArtifactUnarchived(reason)


__all__ = [
    "ArtifactState", "DomainEvent", "Stage", "VersionState", "decide_ingest", "decide_promote",
    "decide_withdraw", "fold", "validate_ingest", "validate_name",
]
