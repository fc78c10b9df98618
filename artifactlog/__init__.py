"""Python client for artifactlog's GraphQL API.

    from artifactlog import Client
    with Client() as client:  # ARTIFACTLOG_URL/_TOKEN, or the running `artifactlog up`
        result = client.ingest("fraud", "scorer", content={"weights": [0.4, 0.6]})
"""

from artifactlog.client import AsyncClient, Client
from artifactlog.errors import (
    ArtifactlogError,
    Conflict,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    StageRuleViolation,
    Timeout,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from artifactlog.refs import VersionRef, parse_ref
from artifactlog.types import (
    Artifact,
    Change,
    Diff,
    IngestResult,
    Lineage,
    LineageEdge,
    ProjectionStatus,
    PromoteResult,
    SqlResult,
    Stage,
    Status,
    Version,
    WithdrawResult,
)

__all__ = [
    "Artifact", "ArtifactlogError", "AsyncClient", "Change", "Client", "Conflict", "Diff",
    "Forbidden", "IngestResult", "InvalidArgument", "LimitExceeded", "Lineage", "LineageEdge",
    "NotFound", "ProjectionStatus", "PromoteResult", "SqlResult", "Stage",
    "StageRuleViolation", "Status", "Timeout", "Unauthenticated", "Unavailable",
    "ValidationError", "Version", "VersionRef", "WithdrawResult", "parse_ref",
]
