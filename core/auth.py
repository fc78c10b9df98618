"""API tokens and the principal a request acts as.

A token is ``al_`` followed by 43 url-safe characters (256 random bits). Its owner sees it once,
when it is created; the database keeps only its sha256 digest, a display prefix, and what it
may do. ``Scope`` and ``Principal`` are pure; ``TokenService`` is the Postgres side.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.artifact import validate_name
from core.errors import Conflict, Forbidden, NotFound, Unauthenticated, Unavailable, ValidationError

log = logging.getLogger(__name__)

TOKEN_PREFIX = "al_"
# Exactly what create() hands out. Anything else cannot be a token of ours, so it is refused
# before it reaches the database: a 10 KB or non-ASCII header costs a regex, nothing more.
TOKEN_PATTERN = re.compile(r"al_[A-Za-z0-9_-]{43}")
# "al_" + 6 characters tells tokens apart in a listing; the 37 characters left (~220 bits)
# keep it unguessable.
DISPLAY_LENGTH = 9

INFO_COLUMNS = "name, prefix, scopes, namespaces, created_at, revoked_at, last_used_at"

# One round trip: find the live token by digest and, at most once a minute, record its use.
# Writing last_used_at on every request would turn every read into a write (WAL, and row-lock
# waits among a busy token's parallel requests); minute resolution is all an operator needs to
# spot unused tokens. The UPDATE re-checks t.last_used_at on the locked row, so concurrent
# requests in the same minute write once. No constant-time compare is needed: the lookup is by
# the digest of the token, and timing an index probe on sha256 outputs tells an attacker
# nothing about any secret, since they cannot choose digests to aim at one.
AUTHENTICATE = """
    WITH live AS (
        SELECT id, name, scopes, namespaces FROM api_tokens
        WHERE token_hash = %s AND revoked_at IS NULL
    ), touched AS (
        UPDATE api_tokens AS t SET last_used_at = now() FROM live
        WHERE t.id = live.id
          AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
    )
    SELECT name, scopes, namespaces FROM live
"""


class Scope(StrEnum):
    READ = "read"  # queries, analytics SQL
    WRITE = "write"  # ingest
    PROMOTE = "promote"  # promote, withdraw
    ADMIN = "admin"  # replay / rebuild, tokens; implies every other scope


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name (the actor in events), scopes and namespaces."""

    name: str
    scopes: frozenset[Scope]
    namespaces: frozenset[str] | None = None  # None: every namespace

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def can_read(self, namespace: str) -> bool:
        """Whether rows of ``namespace`` belong in this principal's lists."""
        return self.has(Scope.READ) and self._may_access(namespace)

    def require(self, scope: Scope, namespace: str | None = None) -> None:
        """Raise Forbidden unless this principal may do ``scope`` work (in ``namespace``)."""
        if not self.has(scope):
            raise Forbidden(f"token {self.name!r} lacks the {scope} scope")
        if namespace is not None and not self._may_access(namespace):
            raise Forbidden(f"token {self.name!r} may not access namespace {namespace!r}")

    def _may_access(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its secret, never its digest."""

    name: str
    prefix: str
    scopes: frozenset[Scope]
    namespaces: frozenset[str] | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(scopes: Iterable[Scope | str]) -> frozenset[Scope]:
    """Scopes by value, case-insensitively ("promote", "PROMOTE", Scope.PROMOTE)."""
    values = [scopes] if isinstance(scopes, str) else list(scopes)
    parsed: set[Scope] = set()
    for value in values:
        try:
            parsed.add(Scope(str(value).lower()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValidationError(f"unknown scope {value!r}: use {known}") from None
    if not parsed:
        raise ValidationError("a token needs at least one scope")
    return frozenset(parsed)


def parse_namespaces(
    namespaces: Iterable[str] | None, scopes: frozenset[Scope]
) -> frozenset[str] | None:
    if namespaces is None:
        return None
    parsed = frozenset([namespaces] if isinstance(namespaces, str) else namespaces)
    if not parsed:
        raise ValidationError("list at least one namespace, or none for all namespaces")
    for namespace in parsed:
        validate_name("namespace", namespace)
    if Scope.ADMIN in scopes:
        # Admin manages tokens and replays the whole log: it spans every namespace anyway.
        raise ValidationError("an admin token cannot be limited to namespaces")
    return parsed


class TokenService:
    """Creates, checks, lists and revokes API tokens (table ``api_tokens``).

    ``authenticate`` always asks the database, so a revoke counts from its commit. The HTTP
    middleware (api/auth.py) trusts a success for a bounded time: the lookup is a round trip
    and a commit, a large part of a small read's cost.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(
        self, name: str, scopes: Iterable[Scope | str], namespaces: Iterable[str] | None = None
    ) -> tuple[str, TokenInfo]:
        """A new token: its plaintext (returned this once, never stored) and its listing."""
        validate_name("token name", name)
        parsed_scopes = parse_scopes(scopes)
        parsed_namespaces = parse_namespaces(namespaces, parsed_scopes)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = token[:DISPLAY_LENGTH]
        scope_values = sorted(s.value for s in parsed_scopes)
        namespace_values = None if parsed_namespaces is None else sorted(parsed_namespaces)
        try:
            rows = await self._fetch(
                "INSERT INTO api_tokens (name, token_hash, prefix, scopes, namespaces)"
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {INFO_COLUMNS}",
                (name, token_digest(token), prefix, scope_values, namespace_values))
        except psycopg.errors.UniqueViolation as exc:
            # The digest of 256 random bits does not collide: the name is what is taken.
            raise Conflict(f"a token named {name!r} already exists (names of revoked tokens"
                           " stay taken: they are actors in the event log)") from exc
        # the name only: even the display prefix is part of the token, and logs carry none of it
        log.info("created API token %r, scopes %s", name, ",".join(scope_values))
        return token, _info(rows[0])

    async def authenticate(self, token: str | None) -> Principal:
        """The principal ``token`` stands for; Unauthenticated unless it is a live token."""
        if not token:
            raise Unauthenticated("an API token is required: send 'Authorization: Bearer <token>'")
        if not TOKEN_PATTERN.fullmatch(token):
            raise Unauthenticated("the API token is malformed: tokens are 'al_' and 43 characters")
        rows = await self._fetch(AUTHENTICATE, (token_digest(token),))
        if not rows:
            raise Unauthenticated("the API token is unknown or revoked")
        return Principal(rows[0]["name"], parse_scopes(rows[0]["scopes"]),
                         _frozen(rows[0]["namespaces"]))

    async def revoke(self, name: str) -> None:
        """Refuse ``name``'s token from the next request on; revoking twice changes nothing."""
        rows = await self._fetch(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE name = %s"
            " RETURNING prefix", (name,))
        if not rows:
            raise NotFound(f"there is no token named {name!r}")
        log.info("revoked API token %r", name)

    async def list(self) -> builtins.list[TokenInfo]:
        """Every token by name, revoked ones included (they remain the record of past actors)."""
        rows = await self._fetch(f"SELECT {INFO_COLUMNS} FROM api_tokens ORDER BY name", ())
        return [_info(row) for row in rows]

    async def _fetch(self, query: str, params: tuple[Any, ...]) -> builtins.list[dict[str, Any]]:
        try:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                return await cur.fetchall()
        except psycopg.OperationalError as exc:
            # 503, not 401: a client must not drop a good token because the database is down.
            raise Unavailable("the token database is unavailable; retry shortly") from exc


def _frozen(values: builtins.list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _info(row: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        name=row["name"], prefix=row["prefix"], scopes=parse_scopes(row["scopes"]),
        namespaces=_frozen(row["namespaces"]), created_at=row["created_at"],
        revoked_at=row["revoked_at"], last_used_at=row["last_used_at"],
    )
