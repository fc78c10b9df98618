"""Errors the client raises: the server's own classes from ``core.errors``.

Re-exporting (not redefining) them keeps one class per code, so ``except artifactlog.Conflict``
and ``except core.errors.Conflict`` catch the same thing wherever the error was raised.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.errors import (
    ArtifactlogError,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    PolicyRefused,
    StageRuleViolation,
    Timeout,
    Unauthenticated,
    Unavailable,
    ValidationError,
)

__all__ = [
    "ArtifactlogError", "Conflict", "Forbidden", "InvalidArgument", "LimitExceeded", "NotFound",
    "PolicyRefused", "StageRuleViolation", "Timeout", "Unauthenticated", "Unavailable",
    "ValidationError",
]

ERRORS_BY_CODE: dict[str, type[ArtifactlogError]] = {
    cls.code: cls for cls in (ValidationError, LimitExceeded, NotFound, Conflict,
                              StageRuleViolation, PolicyRefused, Unauthenticated, Forbidden,
                              Timeout, Unavailable)
}

# Used only when a response carries no code of its own (a proxy's page, a crashed worker).
ERRORS_BY_STATUS: dict[int, type[ArtifactlogError]] = {
    400: ValidationError, 401: Unauthenticated, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: LimitExceeded, 422: ValidationError, 502: Unavailable, 503: Unavailable, 504: Timeout,
}


class InvalidArgument(ValidationError, ValueError):
    """A call the client refuses before sending anything (a malformed ref, two kinds of
    content). Also a ValueError, as Python callers expect of a bad argument."""


def coded_error(code: str, message: str, details: dict[str, Any] | None = None
                ) -> ArtifactlogError:
    """The exception for a server error code; an unknown code still keeps its code."""
    cls = ERRORS_BY_CODE.get(code, ArtifactlogError)
    # ``message`` is the constructor's own parameter: a detail of that name would clash.
    error = cls(message, **{k: v for k, v in (details or {}).items() if k != "message"})
    if cls is ArtifactlogError and code:
        error.code = code  # callers can still branch on codes this client does not know
    return error


def graphql_error(errors: list[dict[str, Any]]) -> ArtifactlogError:
    """The first GraphQL error as an exception (the server refuses on the first problem)."""
    first = errors[0]
    extensions = dict(first.get("extensions") or {})
    code = str(extensions.pop("code", ""))
    if len(errors) > 1:
        extensions["errors"] = [e.get("message") for e in errors]
    return coded_error(code, str(first.get("message", "GraphQL error")), extensions)


def http_error(response: httpx.Response) -> ArtifactlogError:
    """A non-2xx answer: the ``{"error": {"code", "message"}}`` body the server writes, else
    an error chosen by the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return coded_error(str(error.get("code", "")), str(error.get("message", "")),
                           {"status": response.status_code})
    if isinstance(body, dict) and body.get("errors"):
        return graphql_error(body["errors"])
    cls = ERRORS_BY_STATUS.get(response.status_code)
    if cls is None:
        cls = Unavailable if response.status_code >= 500 else ArtifactlogError
    text = response.text.strip()[:200] or response.reason_phrase
    return cls(f"{response.request.url} answered {response.status_code}: {text}",
               status=response.status_code)


def transport_error(url: str, exc: httpx.TransportError) -> Unavailable:
    return Unavailable(f"cannot reach artifactlog at {url}: {type(exc).__name__}: {exc}")
