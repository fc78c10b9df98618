"""A small GraphQL-over-HTTP client the CLI uses to talk to a running server."""

from __future__ import annotations

from typing import Any

import httpx

from core.errors import (
    ArtifactlogError,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    StageRuleViolation,
    Timeout,
    Unauthenticated,
    Unavailable,
    ValidationError,
)

ERRORS_BY_CODE: dict[str, type[ArtifactlogError]] = {
    cls.code: cls for cls in (ValidationError, LimitExceeded, NotFound, Conflict,
                              StageRuleViolation, Unauthenticated, Forbidden, Timeout,
                              Unavailable)
}

VERSION_FIELDS = """
  namespace name number label stage digest size mediaType metadata producer createdAt position
"""


class GraphQLClient:
    def __init__(self, url: str, *, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = url.rstrip("/")
        self.url = self.base_url + "/graphql"
        self.http = httpx.Client(headers=headers, timeout=timeout)

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one operation; a GraphQL error becomes the matching ArtifactlogError."""
        try:
            response = self.http.post(self.url, json={"query": query, "variables": variables})
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach artifactlog at {self.url}: {exc}") from exc
        if response.status_code >= 500:
            raise Unavailable(f"server answered {response.status_code}: {response.text[:200]}")
        body = response.json()
        if body.get("errors"):
            error = body["errors"][0]
            code = (error.get("extensions") or {}).get("code", "")
            raise ERRORS_BY_CODE.get(code, ArtifactlogError)(error["message"])
        return dict(body["data"])

    def sql(self, query: str) -> dict[str, Any]:
        """Run read-only SQL through the server's /sql endpoint."""
        try:
            response = self.http.post(self.base_url + "/sql", content=query.encode(),
                                      headers={"Content-Type": "text/plain"})
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach artifactlog at {self.base_url}: {exc}") from exc
        body = response.json()
        if response.status_code >= 400:
            error = body.get("error", {})
            raise ERRORS_BY_CODE.get(error.get("code", ""), ArtifactlogError)(
                error.get("message", response.text))
        return dict(body)

    def close(self) -> None:
        self.http.close()
