"""``Client`` (blocking) and ``AsyncClient``: the same methods over the same operations
(``artifactlog.operations``); each only sends the requests an operation yields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from artifactlog import config, operations
from artifactlog.errors import transport_error
from artifactlog.operations import MAX_PAGE_SIZE, Call, Request
from artifactlog.refs import Ref
from artifactlog.types import (
    Artifact,
    Diff,
    IngestResult,
    Lineage,
    PromoteResult,
    SqlResult,
    Status,
    Version,
    WithdrawResult,
)

T = TypeVar("T")


def _http_options(url: str | None, token: str | None, timeout: float,
                  client_name: str = "python") -> dict[str, Any]:
    base, token = config.resolve(url, token)
    # The server counts ingests by the path they came by (its /metrics): say who we are.
    headers = {"X-Artifactlog-Client": client_name}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {"base_url": base, "headers": headers, "timeout": timeout}


class Client:
    """A blocking client. ``url``/``token`` default to ARTIFACTLOG_URL / ARTIFACTLOG_TOKEN,
    then to ``$ARTIFACTLOG_HOME/state.json`` of a running ``artifactlog up``."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 60, client_name: str = "python") -> None:
        self._http = httpx.Client(**_http_options(url, token, timeout, client_name))
        self.url = str(self._http.base_url).rstrip("/")

    def _run(self, call: Call[T]) -> T:
        try:
            request = next(call)
            while True:
                request = call.send(self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            call.close()

    def _send(self, request: Request) -> httpx.Response:
        try:
            return self._http.post(request.path, content=request.body,
                                   headers={"Content-Type": request.content_type})
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc

    def execute(self, document: str, variables: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """Any GraphQL operation; its ``data`` (errors raised as for every other method)."""
        return self._run(operations.execute(document, variables))

    def ingest(self, namespace: str, name: str, *, content: Any = None, text: str | None = None,
               data: bytes | None = None, kind: str | None = None,
               media_type: str | None = None, metadata: Mapping[str, Any] | None = None,
               parents: Iterable[Ref] | None = None, producer: str | None = None,
               idempotency_key: str | None = None, expected_version: int | None = None,
               force: bool = False) -> IngestResult:
        return self._run(operations.ingest(
            namespace, name, content=content, text=text, data=data, kind=kind,
            media_type=media_type, metadata=metadata, parents=parents, producer=producer,
            idempotency_key=idempotency_key, expected_version=expected_version, force=force))

    def promote(self, ref: Ref, reason: str | None = None) -> PromoteResult:
        return self._run(operations.promote(ref, reason))

    def withdraw(self, ref: Ref, reason: str | None = None) -> WithdrawResult:
        return self._run(operations.withdraw(ref, reason))

    def artifact(self, namespace: str, name: str, *, min_position: int | None = None
                 ) -> Artifact | None:
        return self._run(operations.artifact(namespace, name, min_position=min_position))

    def history(self, namespace: str, name: str, *, stage: str | None = None,
                page_size: int = MAX_PAGE_SIZE, min_position: int | None = None
                ) -> list[Version]:
        return self._run(operations.history(namespace, name, stage=stage, page_size=page_size,
                                            min_position=min_position))

    def diff(self, a: Ref, b: Ref, *, key: str | Sequence[str] | None = None,
             page_size: int = MAX_PAGE_SIZE) -> Diff:
        return self._run(operations.diff(a, b, key=key, page_size=page_size))

    def lineage(self, ref: Ref, direction: str = "UPSTREAM", depth: int | None = None
                ) -> Lineage:
        return self._run(operations.lineage(ref, direction, depth))

    def sql(self, query: str) -> SqlResult:
        return self._run(operations.sql(query))

    def status(self) -> Status:
        return self._run(operations.status())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """The same methods as ``Client``, awaitable; use ``async with`` or ``await aclose()``."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 60) -> None:
        self._http = httpx.AsyncClient(**_http_options(url, token, timeout))
        self.url = str(self._http.base_url).rstrip("/")

    async def _run(self, call: Call[T]) -> T:
        try:
            request = next(call)
            while True:
                request = call.send(await self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            call.close()

    async def _send(self, request: Request) -> httpx.Response:
        try:
            return await self._http.post(request.path, content=request.body,
                                         headers={"Content-Type": request.content_type})
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc

    async def execute(self, document: str, variables: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        return await self._run(operations.execute(document, variables))

    async def ingest(self, namespace: str, name: str, *, content: Any = None,
                     text: str | None = None, data: bytes | None = None,
                     kind: str | None = None, media_type: str | None = None,
                     metadata: Mapping[str, Any] | None = None,
                     parents: Iterable[Ref] | None = None, producer: str | None = None,
                     idempotency_key: str | None = None, expected_version: int | None = None,
                     force: bool = False) -> IngestResult:
        return await self._run(operations.ingest(
            namespace, name, content=content, text=text, data=data, kind=kind,
            media_type=media_type, metadata=metadata, parents=parents, producer=producer,
            idempotency_key=idempotency_key, expected_version=expected_version, force=force))

    async def promote(self, ref: Ref, reason: str | None = None) -> PromoteResult:
        return await self._run(operations.promote(ref, reason))

    async def withdraw(self, ref: Ref, reason: str | None = None) -> WithdrawResult:
        return await self._run(operations.withdraw(ref, reason))

    async def artifact(self, namespace: str, name: str, *, min_position: int | None = None
                       ) -> Artifact | None:
        return await self._run(operations.artifact(namespace, name, min_position=min_position))

    async def history(self, namespace: str, name: str, *, stage: str | None = None,
                      page_size: int = MAX_PAGE_SIZE, min_position: int | None = None
                      ) -> list[Version]:
        return await self._run(operations.history(
            namespace, name, stage=stage, page_size=page_size, min_position=min_position))

    async def diff(self, a: Ref, b: Ref, *, key: str | Sequence[str] | None = None,
                   page_size: int = MAX_PAGE_SIZE) -> Diff:
        return await self._run(operations.diff(a, b, key=key, page_size=page_size))

    async def lineage(self, ref: Ref, direction: str = "UPSTREAM", depth: int | None = None
                      ) -> Lineage:
        return await self._run(operations.lineage(ref, direction, depth))

    async def sql(self, query: str) -> SqlResult:
        return await self._run(operations.sql(query))

    async def status(self) -> Status:
        return await self._run(operations.status())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()
