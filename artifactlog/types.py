"""Typed results: frozen dataclasses built from the GraphQL answers (camelCase in, snake_case
out), so callers never index into response dicts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from artifactlog.refs import VersionRef
from core.artifact import Stage

__all__ = [
    "Artifact", "Change", "Diff", "IngestResult", "Lineage", "LineageEdge", "ProjectionStatus",
    "PromoteResult", "SqlResult", "Stage", "Status", "Version", "WithdrawResult",
]


@dataclass(frozen=True)
class Version:
    namespace: str
    name: str
    number: int
    label: str
    stage: Stage
    digest: str
    size: int
    media_type: str | None
    metadata: dict[str, Any]
    producer: str | None
    created_at: datetime
    position: int

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.namespace, self.name, self.number)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}@{self.number}"

    def __hash__(self) -> int:
        # The generated hash would fail on the metadata dict; the key is enough (equal
        # versions have equal keys), and lets versions go into sets and dict keys.
        return hash((self.namespace, self.name, self.number))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        return cls(
            namespace=data["namespace"], name=data["name"], number=data["number"],
            label=data["label"], stage=Stage(data["stage"]), digest=data["digest"],
            size=data["size"], media_type=data.get("mediaType"),
            metadata=dict(data.get("metadata") or {}), producer=data.get("producer"),
            created_at=datetime.fromisoformat(data["createdAt"]), position=data["position"])


def optional_version(data: dict[str, Any] | None) -> Version | None:
    return Version.from_json(data) if data is not None else None


@dataclass(frozen=True)
class IngestResult:
    version: Version
    created: bool  # False: the idempotency key or identical content returned an existing one
    position: int


@dataclass(frozen=True)
class PromoteResult:
    version: Version
    previous: Version | None  # the production version before, as it was before this
    position: int


@dataclass(frozen=True)
class WithdrawResult:
    version: Version
    position: int


@dataclass(frozen=True)
class Artifact:
    namespace: str
    name: str
    kind: str
    latest: Version | None
    production: Version | None
    version_count: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(namespace=data["namespace"], name=data["name"], kind=data["kind"],
                   latest=optional_version(data.get("latest")),
                   production=optional_version(data.get("production")),
                   version_count=data["versions"]["totalCount"])


@dataclass(frozen=True)
class Change:
    section: str  # metadata, content, schema, records, text or blob
    op: str
    path: str  # a JSON pointer within the section
    before: Any
    after: Any


@dataclass(frozen=True)
class Diff:
    before: Version
    after: Version
    identical: bool
    summary: dict[str, dict[str, int]]  # counts per section and op
    changes: list[Change]


@dataclass(frozen=True)
class LineageEdge:
    parent: Version
    child: Version


@dataclass(frozen=True)
class Lineage:
    root: Version
    nodes: list[Version]  # the root first
    edges: list[LineageEdge]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lineage:
        nodes = [Version.from_json(n) for n in data["nodes"]]
        # Edges are fetched as keys only and resolved here: every endpoint is among the nodes,
        # so asking for full versions twice would only make the answer larger.
        by_key = {(n.namespace, n.name, n.number): n for n in nodes}

        def node(ref: dict[str, Any]) -> Version:
            return by_key[(ref["namespace"], ref["name"], ref["number"])]

        return cls(root=Version.from_json(data["root"]), nodes=nodes,
                   edges=[LineageEdge(parent=node(e["from"]), child=node(e["to"]))
                          for e in data["edges"]])


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    types: list[str]  # ClickHouse type names
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """Each row as a dict by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    lag: int  # events of the log the projection has not applied yet
    lag_seconds: float | None
    parked: int  # events that keep failing and wait for an operator
    state: str = "OK"  # ALERT: the lag crosses one of the projection's thresholds
    alert_reason: str | None = None
    lag_alert_events: int | None = None
    lag_alert_seconds: float | None = None


@dataclass(frozen=True)
class Status:
    head_position: int
    projections: list[ProjectionStatus]
    state: str = "OK"  # ALERT when any projection is in ALERT

    @property
    def caught_up(self) -> bool:
        """Every projection has applied the whole log (reads and SQL see every write)."""
        return all(p.lag == 0 for p in self.projections)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        return cls(head_position=data["headPosition"], state=data.get("state", "OK"),
                   projections=[ProjectionStatus(
                       name=p["name"], position=p["position"], lag=p["lag"],
                       lag_seconds=p.get("lagSeconds"), parked=p["parked"],
                       state=p.get("state", "OK"), alert_reason=p.get("alertReason"),
                       lag_alert_events=p.get("lagAlertEvents"),
                       lag_alert_seconds=p.get("lagAlertSeconds"))
                       for p in data["projections"]])
