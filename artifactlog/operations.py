"""Every operation as a sans-I/O generator: it yields the HTTP requests it needs and gets the
responses sent back, so request building, paging and parsing live here once and the sync and
async clients differ only in how they send a request."""

from __future__ import annotations

import base64
import json
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from artifactlog import documents
from artifactlog.errors import (
    ArtifactlogError,
    InvalidArgument,
    NotFound,
    graphql_error,
    http_error,
)
from artifactlog.refs import Ref, VersionRef, parse_ref
from artifactlog.types import (
    Artifact,
    Change,
    Diff,
    IngestResult,
    Lineage,
    PromoteResult,
    SqlResult,
    Stage,
    Status,
    Version,
    WithdrawResult,
    optional_version,
)

T = TypeVar("T")
MAX_PAGE_SIZE = 1000  # the server's largest page: fewest round trips


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    content_type: str


Call = Generator[Request, httpx.Response, T]


def execute(document: str, variables: dict[str, Any] | None = None) -> Call[dict[str, Any]]:
    """One GraphQL operation; its ``data``, or the first error raised by code."""
    try:
        # allow_nan=False: NaN is not JSON, and the server would refuse the whole body.
        body = json.dumps({"query": document, "variables": variables or {}}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"the arguments are not JSON-serialisable: {exc}") from exc
    response = yield Request("/graphql", body.encode(), "application/json")
    answer = json_body(response)
    if answer.get("errors"):
        raise graphql_error(answer["errors"])
    return dict(answer.get("data") or {})


def json_body(response: httpx.Response) -> dict[str, Any]:
    if not response.is_success:
        raise http_error(response)
    try:
        answer = response.json()
    except ValueError as exc:
        raise ArtifactlogError(f"{response.request.url} answered with something not JSON: "
                               f"{response.text[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise ArtifactlogError(f"{response.request.url} answered {answer!r}, not an object")
    return answer


def ingest(namespace: str, name: str, *, content: Any = None, text: str | None = None,
           data: bytes | None = None, kind: str | None = None, media_type: str | None = None,
           metadata: Mapping[str, Any] | None = None, parents: Iterable[Ref] | None = None,
           producer: str | None = None, idempotency_key: str | None = None,
           expected_version: int | None = None, force: bool = False) -> Call[IngestResult]:
    given = [n for n, v in (("content", content), ("text", text), ("data", data))
             if v is not None]
    if len(given) != 1:
        raise InvalidArgument("give exactly one of content= (JSON), text= or data= (bytes); "
                              f"got {', '.join(given) or 'none'}")
    fields: dict[str, Any] = {"namespace": namespace, "name": name, "force": force}
    if content is not None:
        fields["content"] = content
    elif text is not None:
        fields["text"] = text
    else:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument(f"data= must be bytes, not {type(data).__name__}")
        fields["contentBase64"] = base64.b64encode(data).decode("ascii")
    optional = {"kind": kind, "mediaType": media_type, "producer": producer,
                "idempotencyKey": idempotency_key, "expectedVersion": expected_version,
                "metadata": dict(metadata) if metadata is not None else None}
    fields.update({k: v for k, v in optional.items() if v is not None})
    if parents is not None:
        if isinstance(parents, str | Mapping):
            raise InvalidArgument(f"parents= is a list of refs, not one ref: {parents!r}")
        fields["parents"] = [parse_ref(p).to_input() for p in parents]
    found = (yield from execute(documents.INGEST, {"input": fields}))["ingest"]
    return IngestResult(Version.from_json(found["version"]), found["created"],
                        found["position"])


def promote(ref: Ref, reason: str | None = None) -> Call[PromoteResult]:
    variables = {"ref": parse_ref(ref).to_input(), "reason": reason}
    found = (yield from execute(documents.PROMOTE, variables))["promote"]
    return PromoteResult(Version.from_json(found["version"]),
                         optional_version(found["previous"]), found["position"])


def withdraw(ref: Ref, reason: str | None = None) -> Call[WithdrawResult]:
    variables = {"ref": parse_ref(ref).to_input(), "reason": reason}
    found = (yield from execute(documents.WITHDRAW, variables))["withdraw"]
    return WithdrawResult(Version.from_json(found["version"]), found["position"])


def artifact(namespace: str, name: str, *, min_position: int | None = None
             ) -> Call[Artifact | None]:
    variables = {"namespace": namespace, "name": name, "minPosition": min_position}
    found = (yield from execute(documents.ARTIFACT, variables))["artifact"]
    return Artifact.from_json(found) if found is not None else None


def history(namespace: str, name: str, *, stage: str | None = None,
            page_size: int = MAX_PAGE_SIZE, min_position: int | None = None
            ) -> Call[list[Version]]:
    """Every version, oldest first, fetched page by page until the server has no more."""
    check_page_size(page_size)
    variables: dict[str, Any] = {
        "namespace": namespace, "name": name, "first": page_size, "after": None,
        "stage": stage_name(stage), "minPosition": min_position}
    versions: list[Version] = []
    while True:
        found = (yield from execute(documents.HISTORY, variables))["artifact"]
        if found is None:
            raise NotFound(f"artifact {namespace}/{name} does not exist")
        page = found["versions"]
        versions += [Version.from_json(edge["node"]) for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return versions
        # Once the first page waited for min_position, later pages need not wait again.
        variables |= {"after": page["pageInfo"]["endCursor"], "minPosition": None}


def diff(a: Ref, b: Ref, *, key: str | Sequence[str] | None = None,
         page_size: int = MAX_PAGE_SIZE) -> Call[Diff]:
    """What changed from ``a`` to ``b``, with every change (paged through)."""
    check_page_size(page_size)
    keys = [key] if isinstance(key, str) else list(key) if key is not None else None
    variables: dict[str, Any] = {"from": parse_ref(a).to_input(), "to": parse_ref(b).to_input(),
                                 "key": keys, "first": page_size, "after": None}
    first: dict[str, Any] | None = None
    changes: list[Change] = []
    while True:
        found = (yield from execute(documents.DIFF, variables))["diff"]
        first = first or found
        page = found["changes"]
        changes += [Change(**edge["node"]) for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        # Later pages must compare the same two versions even if "latest" moves meanwhile,
        # so the refs are pinned to the numbers the first page resolved.
        variables |= {"after": page["pageInfo"]["endCursor"],
                      "from": pinned(first["from"]), "to": pinned(first["to"])}
    return Diff(before=Version.from_json(first["from"]), after=Version.from_json(first["to"]),
                identical=first["identical"], summary=first["summary"], changes=changes)


def lineage(ref: Ref, direction: str = "UPSTREAM", depth: int | None = None) -> Call[Lineage]:
    if direction.upper() not in ("UPSTREAM", "DOWNSTREAM"):
        raise InvalidArgument(f"direction is UPSTREAM or DOWNSTREAM, not {direction!r}")
    variables = {"ref": parse_ref(ref).to_input(), "direction": direction.upper(),
                 "depth": depth}
    return Lineage.from_json((yield from execute(documents.LINEAGE, variables))["lineage"])


def sql(query: str) -> Call[SqlResult]:
    """Read-only ClickHouse SQL through POST /sql (what the CLI uses)."""
    response = yield Request("/sql", query.encode("utf-8"), "text/plain; charset=utf-8")
    answer = json_body(response)
    return SqlResult(columns=answer["columns"], types=answer["types"], rows=answer["rows"])


def status() -> Call[Status]:
    return Status.from_json((yield from execute(documents.STATUS))["status"])


def stage_name(stage: str | None) -> str | None:
    if stage is None:
        return None
    try:
        return Stage(stage.upper()).value
    except (ValueError, AttributeError) as exc:
        raise InvalidArgument(f"stage is one of {', '.join(Stage)}, not {stage!r}") from exc


def check_page_size(size: int) -> None:
    # A page of 0 would never advance the cursor and loop for ever.
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgument(f"page_size must be a positive integer, not {size!r}")


def pinned(version: dict[str, Any]) -> dict[str, Any]:
    return VersionRef(version["namespace"], version["name"], version["number"]).to_input()
