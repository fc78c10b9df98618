"""GraphQL for the schema registry: register, check, list versions, set the mode, and the
ingests it refused (rejections per producer)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api.context import Info
from core.auth import Scope
from core.schema_registry import SchemaSubject, SchemaVersion


@strawberry.type
class RegisteredSchema:
    subject: str
    version: int
    schema: JSON
    fingerprint: str
    created_at: datetime
    created_by: str | None

    @classmethod
    def of(cls, found: SchemaVersion) -> RegisteredSchema:
        return cls(subject=found.subject, version=found.version, schema=dict(found.schema),
                   fingerprint=found.fingerprint, created_at=found.created_at,
                   created_by=found.created_by)


@strawberry.type
class SchemaReason:
    pointer: str
    message: str
    direction: str | None
    version: int | None


@strawberry.type
class CompatibilityCheck:
    compatible: bool
    reasons: list[SchemaReason]


@strawberry.type
class IngestRejection:
    namespace: str
    name: str
    producer: str | None
    actor: str | None
    subject: str
    schema_version: int
    violations: JSON
    rejected_at: datetime


def subject_of(info: Info, key: str, scope: Scope) -> SchemaSubject:
    subject = SchemaSubject.parse(key)
    info.context.require(scope, subject.namespace)
    return subject


def registry(info: Info) -> Any:
    schemas = info.context.service.schemas
    assert schemas is not None, "build_services wires the registry"
    return schemas


@strawberry.type
class SchemaQueries:
    @strawberry.field(description='Versions of a subject ("artifact:NS/NAME" or '
                      '"kind:NS/KIND"), oldest first.')
    async def schema_versions(self, info: Info, subject: str) -> list[RegisteredSchema]:
        found = await registry(info).versions(subject_of(info, subject, Scope.READ))
        return [RegisteredSchema.of(v) for v in found]

    @strawberry.field(description="What registering this schema would break (nothing is "
                      "registered).")
    async def check_schema_compatibility(self, info: Info, subject: str, schema: JSON
                                         ) -> CompatibilityCheck:
        reasons = await registry(info).check(subject_of(info, subject, Scope.WRITE), schema)
        return CompatibilityCheck(compatible=not reasons, reasons=[
            SchemaReason(pointer=r.pointer, message=r.message, direction=r.direction,
                         version=r.version) for r in reasons])

    @strawberry.field(description="Ingests refused by a schema, newest first.")
    async def ingest_rejections(self, info: Info, namespace: str, name: str | None = None,
                                first: int = 100) -> list[IngestRejection]:
        info.context.require(Scope.READ, namespace)
        rows = await registry(info).rejections(namespace, name, limit=min(first, 1000))
        return [IngestRejection(**row) for row in rows]


@strawberry.type
class SchemaMutations:
    @strawberry.mutation(description="Register a JSON Schema (refused with the breaking "
                         "changes when the subject's compatibility mode forbids it).")
    async def register_schema(self, info: Info, subject: str, schema: JSON,
                              compatibility: str | None = None) -> RegisteredSchema:
        found = await registry(info).register(
            subject_of(info, subject, Scope.WRITE), schema, compatibility=compatibility,
            actor=info.context.actor or "")
        return RegisteredSchema.of(found)

    @strawberry.mutation(description="NONE, BACKWARD, FORWARD, FULL, or their _TRANSITIVE "
                         "forms.")
    async def set_schema_compatibility(self, info: Info, subject: str,
                                       compatibility: str) -> str:
        mode = await registry(info).set_compatibility(
            subject_of(info, subject, Scope.PROMOTE), compatibility,
            actor=info.context.actor or "")
        return str(mode)
