"""ClickHouse adapter: one async facade over clickhouse-connect for both chDB (the ClickHouse
engine in-process, ``chdb:///abs/path``) and a server (``http://user:pass@host:8123``).

clickhouse-connect's chDB client is synchronous, so every call runs on one dedicated worker
thread: calls on an adapter are serialized and never block the event loop. Give each
independent user of the engine (the analytics projection, the read-only SQL service) its own
adapter, so a slow query of one does not queue behind the other, and they share no session.

chDB facts this relies on (chDB 26.9): a process hosts one engine, on one data directory.
Any number of clients may open the same directory; opening a different one while a client is
still open raises (``EmbeddedServer already initialized with path ...``), and works again once
every client is closed. So tests share one directory and isolate themselves by ``database``.

Errors are clickhouse-connect's own (``OperationalError`` for a lost connection, which the
projection runner retries; ``DatabaseError`` with ``.code`` for an engine refusal): callers
that face users translate them into ``core.errors``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from core.errors import Unavailable, ValidationError

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
QueryResult = tuple[list[str], list[str], Rows]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    """A plain identifier, backquoted; anything else is refused rather than escaped."""
    if not _IDENTIFIER.match(name):
        raise ValidationError(f"{name!r} is not a valid ClickHouse identifier")
    return f"`{name}`"


class ClickHouse:
    """Async access to one ClickHouse database, through a single worker thread."""

    def __init__(self, dsn: str, database: str | None = None) -> None:
        if database is not None:
            quote_identifier(database)
        self.dsn = dsn
        self.database = database
        self._client: Client | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._closed = False

    async def command(
        self, sql: str, parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run a statement that returns no rows (DDL, ALTER, TRUNCATE...)."""
        return await self._call(lambda c: c.command(
            sql, parameters=dict(parameters or {}) or None, settings=dict(settings or {})))

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        """Run a query: (column names, ClickHouse type names, rows as tuples)."""
        def run(client: Client) -> QueryResult:
            result = client.query(sql, parameters=dict(parameters or {}) or None,
                                  settings=dict(settings or {}))
            types = [t.name for t in result.column_types]
            return list(result.column_names), types, [tuple(r) for r in result.result_rows]
        return await self._call(run)

    async def query_lines(self, sql: str) -> list[str]:
        """Run a one-column query for its text: one TabSeparated (escaped) line a row.

        Takes no settings on purpose: on this path chDB applies them with SET on the
        connection, and a SET of readonly=1 could never be undone there.
        """
        raw = await self._call(lambda c: c.raw_query(sql, fmt="TabSeparated"))
        return raw.decode("utf-8", errors="replace").splitlines()

    async def insert(
        self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert ``rows`` as one block (clickhouse-connect sends it columnar, Native)."""
        if not rows:
            return
        await self._call(lambda c: c.insert(
            table, list(rows), column_names=list(column_names), settings=dict(settings or {})))

    async def close(self) -> None:
        """Close the client (chDB: release the engine handle) and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_client)
        self._executor.shutdown(wait=False)

    async def _call(self, fn: Callable[[Client], T]) -> T:
        if self._closed:
            raise Unavailable("the ClickHouse adapter is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connected()))

    def _connected(self) -> Client:
        # Runs on the worker thread: the client is created and used on that thread only.
        if self._client is None:
            # "schema": aware datetimes for columns that declare a zone (all of ours, UTC),
            # rather than naive ones a reader might take for local time.
            client = clickhouse_connect.get_client(dsn=self.dsn, tz_mode="schema")
            if self.database is not None:
                client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}")
                client.database = self.database
            self._client = client
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
