"""Domain events (past tense, immutable) and their envelopes.

A ``DomainEvent`` is what the aggregate decides; a ``NewEvent`` is one on its way into the log;
a ``RecordedEvent`` is one the log has stored, with its global position.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


@dataclass(frozen=True)
class VersionKey:
    namespace: str
    name: str
    number: int

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}@{self.number}"


@dataclass(frozen=True)
class VersionIngested:
    type_name: ClassVar[str] = "VersionIngested"
    number: int
    kind: str
    label: str
    digest: str
    size: int
    media_type: str | None
    content_type: str  # "json" | "text" | "bytes"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    parents: tuple[VersionKey, ...] = ()
    producer: str | None = None
    # The version scheme in effect from this version on, when this ingest set or changed it.
    scheme: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class VersionPromoted:
    type_name: ClassVar[str] = "VersionPromoted"
    number: int
    previous: int | None
    reason: str | None = None
    override: bool = False  # an admin promoted past failing policies (reason required)
    approved_by: str | None = None


@dataclass(frozen=True)
class VersionWithdrawn:
    type_name: ClassVar[str] = "VersionWithdrawn"
    number: int
    reason: str | None = None


@dataclass(frozen=True)
class VersionSchemeSet:
    type_name: ClassVar[str] = "VersionSchemeSet"
    kind: str
    template: str | None = None


@dataclass(frozen=True)
class PromotionPolicySet:
    type_name: ClassVar[str] = "PromotionPolicySet"
    rules: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class PromotionRequested:
    type_name: ClassVar[str] = "PromotionRequested"
    number: int
    digest: str
    reason: str | None = None


@dataclass(frozen=True)
class PromotionApproved:
    type_name: ClassVar[str] = "PromotionApproved"
    number: int
    digest: str


@dataclass(frozen=True)
class ContentPurged:
    """Retention removed a version's content bytes (its events and metadata stay). The bytes
    themselves go only when no unpurged version shares the digest."""

    type_name: ClassVar[str] = "ContentPurged"
    number: int
    digest: str
    reason: str | None = None


@dataclass(frozen=True)
class ArtifactArchived:
    """Hidden from listings; its history stays readable."""

    type_name: ClassVar[str] = "ArtifactArchived"
    reason: str | None = None


@dataclass(frozen=True)
class ArtifactUnarchived:
    type_name: ClassVar[str] = "ArtifactUnarchived"
    reason: str | None = None


DomainEvent = (VersionIngested | VersionPromoted | VersionWithdrawn | VersionSchemeSet
               | PromotionPolicySet | PromotionRequested | PromotionApproved | ContentPurged
               | ArtifactArchived | ArtifactUnarchived)
# Events that change a version's stage or create one; the rest concern the artifact
# (ContentPurged names a version but leaves its stage as it was).
VERSION_EVENTS = ("VersionIngested", "VersionPromoted", "VersionWithdrawn")
EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.type_name: cls
    for cls in (VersionIngested, VersionPromoted, VersionWithdrawn, VersionSchemeSet,
                PromotionPolicySet, PromotionRequested, PromotionApproved, ContentPurged,
                ArtifactArchived, ArtifactUnarchived)
}


# Each event type's field names, read once: ``dataclasses.fields`` per call showed up in bulk
# ingest profiles (every provisional and committed event is rebuilt by ``from_payload``).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES.values()}
# As sets for from_payload's membership test (a tuple scan compares every key with every
# field name: stored payloads' keys are not the interned field-name strings).
_FIELD_SETS: dict[type, frozenset[str]] = {
    cls: frozenset(names) for cls, names in _FIELD_NAMES.items()}


def to_payload(event: DomainEvent) -> dict[str, Any]:
    """The JSON payload stored in the log for a domain event.

    Equal to what ``dataclasses.asdict`` gives (tests/unit/test_payloads.py holds it to that),
    built shallowly: asdict's recursive deep copy was a tenth of bulk ingest CPU. Only the
    nested values that asdict would turn into plain containers are converted: parents into
    dicts and mappings into fresh dicts, so the payload never aliases the event's mappings
    at the top level and serialises exactly as before.
    """
    payload = {name: getattr(event, name) for name in _FIELD_NAMES[type(event)]}
    if isinstance(event, VersionIngested):
        payload["metadata"] = dict(event.metadata)
        payload["parents"] = tuple({"namespace": p.namespace, "name": p.name, "number": p.number}
                                   for p in event.parents)
        if event.scheme is not None:
            payload["scheme"] = _plain(event.scheme)
    elif isinstance(event, PromotionPolicySet):
        payload["rules"] = tuple(_plain(rule) for rule in event.rules)
    return payload


def _plain(value: Any) -> Any:
    """What ``dataclasses.asdict`` makes of a nested value: dicts, lists and tuples copied
    (their items too), anything else as it is (scalars; asdict's deep copy of those is
    equal)."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


def from_payload(type_name: str, payload: Mapping[str, Any]) -> DomainEvent:
    """Rebuild the domain event from a stored payload; unknown keys are ignored so old
    readers survive new optional fields."""
    cls = EVENT_TYPES[type_name]
    names = _FIELD_SETS[cls]
    kwargs = {k: v for k, v in payload.items() if k in names}
    if cls is VersionIngested:
        kwargs["parents"] = tuple(VersionKey(**p) for p in kwargs.get("parents", ()))
    if cls is PromotionPolicySet:
        kwargs["rules"] = tuple(kwargs.get("rules", ()))
    return cls(**kwargs)


@dataclass(frozen=True)
class NewEvent:
    namespace: str
    name: str
    stream_version: int
    event: DomainEvent
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def type(self) -> str:
        return self.event.type_name


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    event_id: uuid.UUID
    namespace: str
    name: str
    stream_version: int
    type: str
    payload: Mapping[str, Any]
    metadata: Mapping[str, Any]
    recorded_at: datetime

    @property
    def event(self) -> DomainEvent:
        """The domain event, decoded from the payload once per envelope: a projection reads it
        more than once per event (the analytics projection's needed_versions and derive), and
        decoding was a fifth of its apply (BENCHMARKS.md). Kept in the instance ``__dict__``
        (a frozen dataclass allows that), so it takes no part in equality, hashing or repr;
        not functools.cached_property, whose lock (Python 3.11) cost more than decoding."""
        cached: DomainEvent | None = self.__dict__.get("_event")
        if cached is None:
            cached = self.__dict__["_event"] = from_payload(self.type, self.payload)
        return cached

    def decoding_to(self, event: DomainEvent) -> RecordedEvent:
        """This envelope, told that its payload decodes to ``event`` (it was built from it):
        ``event`` then answers without decoding. Returns self."""
        self.__dict__["_event"] = event
        return self

    def to_json(self) -> dict[str, Any]:
        """The wire form published on JetStream and served by the API."""
        return {
            "position": self.position,
            "eventId": str(self.event_id),
            "type": self.type,
            "namespace": self.namespace,
            "name": self.name,
            "streamVersion": self.stream_version,
            "recordedAt": self.recorded_at.isoformat(),
            "payload": dict(self.payload),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordedEvent:
        return cls(
            position=int(data["position"]),
            event_id=uuid.UUID(data["eventId"]),
            namespace=data["namespace"],
            name=data["name"],
            stream_version=int(data["streamVersion"]),
            type=data["type"],
            payload=data["payload"],
            metadata=data.get("metadata") or {},
            recorded_at=datetime.fromisoformat(data["recordedAt"]),
        )
