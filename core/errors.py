"""The one exception hierarchy. Every refusal the system makes is one of these.

    ArtifactlogError                 code
    ├── ValidationError              VALIDATION   bad input; nothing was written
    │   └── LimitExceeded            LIMIT        input over a configured limit
    ├── NotFound                     NOT_FOUND    artifact or version does not exist
    ├── ContentGone                  CONTENT_PURGED  retention purged the version's bytes
    ├── Conflict                     CONFLICT     expected version mismatch, idempotency key reuse
    │   ├── StreamVersionTaken                    a concurrent append won the race (retried)
    │   └── IdempotencyKeyTaken                   a concurrent request with the key won (retried)
    ├── StageRuleViolation           STAGE_RULE   promote/withdraw not allowed from this stage
    ├── PolicyRefused                POLICY       a promotion policy failed (says which, why)
    ├── Unauthenticated              UNAUTHENTICATED
    ├── Forbidden                    FORBIDDEN
    ├── Timeout                      TIMEOUT      a bounded wait ran out; safe to retry
    └── Unavailable                  UNAVAILABLE  a dependency is down; safe to retry

Each carries a machine-readable ``code`` that the API puts in GraphQL ``extensions`` and
maps to an HTTP status; the message is written for a person to act on.
"""

from __future__ import annotations

from typing import Any


class ArtifactlogError(Exception):
    code = "INTERNAL"
    http_status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(ArtifactlogError):
    code = "VALIDATION"
    http_status = 422


class LimitExceeded(ValidationError):
    code = "LIMIT"
    http_status = 413


class NotFound(ArtifactlogError):
    code = "NOT_FOUND"
    http_status = 404


class ContentGone(ArtifactlogError):
    """The version exists (its events and metadata stay) but retention purged its bytes."""

    code = "CONTENT_PURGED"
    http_status = 410


class Conflict(ArtifactlogError):
    code = "CONFLICT"
    http_status = 409


class StreamVersionTaken(Conflict):
    """Another writer appended to the same artifact first; reload and decide again."""


class IdempotencyKeyTaken(Conflict):
    """Another request with the same idempotency key committed first."""


class StageRuleViolation(ArtifactlogError):
    code = "STAGE_RULE"
    http_status = 409


class PolicyRefused(ArtifactlogError):
    code = "POLICY"
    http_status = 409


class Unauthenticated(ArtifactlogError):
    code = "UNAUTHENTICATED"
    http_status = 401


class Forbidden(ArtifactlogError):
    code = "FORBIDDEN"
    http_status = 403


class Timeout(ArtifactlogError):
    code = "TIMEOUT"
    http_status = 504


class Unavailable(ArtifactlogError):
    code = "UNAVAILABLE"
    http_status = 503
