"""The schema registry: JSON Schema versions per subject (tables ``schema_subjects`` and
``schema_versions``), and the ingests they refused (``ingest_rejections``).

A subject is an artifact ("artifact:NS/NAME") or a namespace + kind ("kind:NS/KIND"); for
an ingest the artifact's subject wins. Each subject has one compatibility mode (set by its
first registration, BACKWARD by default) that every new version must meet.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.artifact import MAX_KIND_LENGTH, validate_name
from core.content import canonical_json
from core.errors import Conflict, LimitExceeded, ValidationError
from core.schema_compat import DEFAULT_COMPATIBILITY, Compatibility, Reason, check
from core.schema_compat import parse_compatibility as parse_mode
from core.schema_validation import MAX_VIOLATIONS, Violation, check_schema, violations

MAX_SCHEMA_BYTES = 256 * 1024  # a schema describes data; it is not data itself
COLUMNS = "subject, version, schema, fingerprint, created_at, created_by"


class IncompatibleSchema(Conflict):
    """A new schema version breaks the subject's compatibility mode (CONFLICT, as Confluent's
    409): the schema is valid, the registered versions refuse it. details["reasons"]."""


class ContentRejected(ValidationError):
    """Ingested content breaks the current schema (VALIDATION). details["violations"]."""


@dataclass(frozen=True)
class SchemaSubject:
    scope: str  # "artifact" | "kind"
    namespace: str
    name: str  # the artifact's name, or the kind

    def __post_init__(self) -> None:
        validate_name("namespace", self.namespace)
        if self.scope == "artifact":
            validate_name("name", self.name)
        elif self.scope != "kind" or not 0 < len(self.name) <= MAX_KIND_LENGTH:
            raise ValidationError(f"a subject is artifact:NS/NAME or kind:NS/KIND (kind 1-"
                                  f"{MAX_KIND_LENGTH} characters), not {self.key!r}")

    @classmethod
    def artifact(cls, namespace: str, name: str) -> SchemaSubject:
        return cls("artifact", namespace, name)

    @classmethod
    def kind(cls, namespace: str, kind: str) -> SchemaSubject:
        return cls("kind", namespace, kind)

    @classmethod
    def parse(cls, key: str) -> SchemaSubject:
        """The inverse of ``key``: what the API and CLI take."""
        scope, _, rest = key.partition(":")
        namespace, _, name = rest.partition("/")
        return cls(scope, namespace, name)

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    schema: Mapping[str, Any]
    fingerprint: str
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.subject}@{self.version}"


def fingerprint(schema: Any) -> str:
    return hashlib.sha256(canonical_json(schema)).hexdigest()


class SchemaRegistry:
    """Registers schema versions under compatibility modes; validates and refuses content."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def register(self, subject: SchemaSubject, schema: Any, *,
                       compatibility: str | None = None, actor: str) -> SchemaVersion:
        """A new version, or the existing one with an identical schema; IncompatibleSchema if
        the subject's mode refuses it. ``compatibility`` sets the mode of a new subject."""
        _check_submitted(schema)
        mode = parse_mode(compatibility) if compatibility is not None else None
        digest = fingerprint(schema)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO schema_subjects (subject, compatibility, updated_by)"
                " VALUES (%s, %s, %s) ON CONFLICT (subject) DO NOTHING",
                (subject.key, (mode or DEFAULT_COMPATIBILITY).value, actor))
            # The row lock makes registrations of one subject take turns: the next one reads
            # the versions this one commits, so no two get the same number or skip a check.
            cursor = await conn.execute("SELECT compatibility FROM schema_subjects"
                                        " WHERE subject = %s FOR UPDATE", (subject.key,))
            row = await cursor.fetchone()
            assert row is not None
            current = Compatibility(row[0])
            if mode is not None and mode != current:
                raise Conflict(f"{subject.key} is {current}; change its compatibility first"
                               f" (asked for {mode})", subject=subject.key)
            known = await _versions(conn, subject.key)
            same = next((v for v in known if v.fingerprint == digest), None)
            if same is not None:
                return same
            reasons = check(current, schema, [v.schema for v in known])
            if reasons:
                raise _incompatible(subject, current, reasons)
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"INSERT INTO schema_versions ({COLUMNS}) VALUES (%s, %s, %s, %s, now(), %s)"
                    f" RETURNING {COLUMNS}",
                    (subject.key, len(known) + 1, Jsonb(schema), digest, actor))
                created = await cur.fetchone()
            assert created is not None
            return SchemaVersion(**created)

    async def check(self, subject: SchemaSubject, schema: Any) -> list[Reason]:
        """What registering ``schema`` would break, without registering it."""
        _check_submitted(schema)
        async with self.pool.connection() as conn:
            current = await _mode(conn, subject.key)
            known = await _versions(conn, subject.key)
        digest = fingerprint(schema)
        if current is None or any(v.fingerprint == digest for v in known):
            return []
        return check(current, schema, [v.schema for v in known])

    async def versions(self, subject: SchemaSubject) -> list[SchemaVersion]:
        """Every version of ``subject``, oldest first (none for an unknown subject)."""
        async with self.pool.connection() as conn:
            return await _versions(conn, subject.key)

    async def compatibility(self, subject: SchemaSubject) -> Compatibility | None:
        async with self.pool.connection() as conn:
            return await _mode(conn, subject.key)

    async def set_compatibility(self, subject: SchemaSubject, mode: str, *,
                                actor: str) -> Compatibility:
        """Set the mode future versions must meet; versions already registered stay."""
        parsed = parse_mode(mode)
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO schema_subjects (subject, compatibility, updated_by)"
                " VALUES (%s, %s, %s) ON CONFLICT (subject) DO UPDATE SET compatibility ="
                " excluded.compatibility, updated_by = excluded.updated_by, updated_at = now()",
                (subject.key, parsed.value, actor))
        return parsed

    async def current_for(self, namespace: str, name: str, kind: str | None
                          ) -> SchemaVersion | None:
        """The schema an ingest into NAMESPACE/NAME of ``kind`` must meet: the artifact
        subject's latest version, else the namespace + kind subject's, else None."""
        keys = [SchemaSubject.artifact(namespace, name).key]
        keys += [SchemaSubject.kind(namespace, kind).key] if kind else []
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {COLUMNS} FROM schema_versions WHERE subject = ANY(%s)"
                " ORDER BY subject = %s DESC, version DESC LIMIT 1", (keys, keys[0]))
            row = await cur.fetchone()
        return None if row is None else SchemaVersion(**row)

    async def validate_ingest(self, namespace: str, name: str, kind: str | None, *,
                              content: Any, content_type: str, producer: str | None,
                              actor: str | None) -> SchemaVersion | None:
        """Refuse (ContentRejected, recorded) content that breaks the current schema; the
        version it met, or None when no schema applies. Datasets in CSV / NDJSON text: pass
        the parsed rows as ``content`` with content_type "json"."""
        current = await self.current_for(namespace, name, kind)
        if current is None:
            return None
        return await self.check_content(current, namespace, name, content=content,
                                        content_type=content_type, producer=producer,
                                        actor=actor)

    async def current_for_many(self, wanted: Collection[tuple[str, str, str | None]]
                               ) -> dict[tuple[str, str, str | None], SchemaVersion | None]:
        """``current_for`` of each (namespace, name, kind), in one query (bulk ingest)."""
        subjects = {(ns, name, kind): (SchemaSubject.artifact(ns, name).key,
                                       SchemaSubject.kind(ns, kind).key if kind else None)
                    for ns, name, kind in wanted}
        keys = sorted({key for pair in subjects.values() for key in pair if key})
        latest: dict[str, SchemaVersion] = {}
        if keys:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"SELECT DISTINCT ON (subject) {COLUMNS} FROM schema_versions"
                    " WHERE subject = ANY(%s) ORDER BY subject, version DESC", (keys,))
                latest = {row["subject"]: SchemaVersion(**row) for row in await cur.fetchall()}
        return {want: latest.get(artifact) or (latest.get(kind) if kind else None)
                for want, (artifact, kind) in subjects.items()}

    async def check_content(self, current: SchemaVersion, namespace: str, name: str, *,
                            content: Any, content_type: str, producer: str | None,
                            actor: str | None) -> SchemaVersion:
        """``validate_ingest`` against a schema already looked up."""
        if content_type != "json":
            found = [Violation("", f"{content_type} content: the schema applies to JSON")]
        else:  # jsonschema is pure Python: keep a large document off the event loop
            found = await asyncio.to_thread(violations, current.schema, content)
        if found:
            await self.record_rejection(namespace, name, producer=producer, actor=actor,
                                        schema_version=current, violations=found)
            raise _rejected(namespace, name, current, found)
        return current

    async def rejections(self, namespace: str, name: str | None, *, limit: int
                         ) -> list[dict[str, Any]]:
        """Refused ingests, newest first (of one artifact, or a whole namespace)."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT namespace, name, producer, actor, subject, schema_version, violations,"
                " rejected_at FROM ingest_rejections WHERE namespace = %s"
                " AND (%s::text IS NULL OR name = %s) ORDER BY id DESC LIMIT %s",
                (namespace, name, name, limit))
            return await cur.fetchall()

    async def record_rejection(self, namespace: str, name: str, *, producer: str | None,
                               actor: str | None, schema_version: SchemaVersion,
                               violations: Sequence[Violation]) -> None:
        """Keep a refused ingest (its own transaction: the ingest itself writes nothing)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO ingest_rejections (namespace, name, producer, actor, subject,"
                " schema_version, violations) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (namespace, name, producer, actor, schema_version.subject,
                 schema_version.version, Jsonb([asdict(v) for v in violations])))


def _check_submitted(schema: Any) -> None:
    if len(canonical_json(schema)) > MAX_SCHEMA_BYTES:
        raise LimitExceeded(f"a schema is limited to {MAX_SCHEMA_BYTES} bytes")
    check_schema(schema)


async def _mode(conn: AsyncConnection[Any], key: str) -> Compatibility | None:
    cursor = await conn.execute("SELECT compatibility FROM schema_subjects WHERE subject = %s",
                                (key,))
    row = await cursor.fetchone()
    return None if row is None else Compatibility(row[0])


async def _versions(conn: AsyncConnection[Any], key: str) -> list[SchemaVersion]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM schema_versions WHERE subject = %s"
                          " ORDER BY version", (key,))
        return [SchemaVersion(**row) for row in await cur.fetchall()]


def _incompatible(subject: SchemaSubject, mode: Compatibility, reasons: list[Reason]
                  ) -> IncompatibleSchema:
    lines = "\n".join(f"  {r}" for r in reasons)
    return IncompatibleSchema(
        f"schema is not {mode} compatible with {subject.key}:\n{lines}", subject=subject.key,
        compatibility=mode.value, reasons=[asdict(r) for r in reasons])


def _rejected(namespace: str, name: str, schema: SchemaVersion, found: list[Violation]
              ) -> ContentRejected:
    lines = "\n".join(f"  {v}" for v in found)
    count = f"the first {len(found)} violations" if len(found) >= MAX_VIOLATIONS \
        else f"{len(found)} violation{'s' if len(found) != 1 else ''}"
    return ContentRejected(
        f"content of {namespace}/{name} does not match schema {schema.ref} ({count}):\n{lines}",
        subject=schema.subject, schemaVersion=schema.version,
        violations=[asdict(v) for v in found])
