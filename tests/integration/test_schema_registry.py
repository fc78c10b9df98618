"""The schema registry against the real embedded Postgres: registration under each mode,
checks without registering, the schema an ingest must meet, and recorded refusals.

BACKWARD: the new schema reads data written with the previous one; FORWARD: the previous
schema reads data written with the new one; FULL: both (Confluent's meanings; the pure
rules are pinned in tests/unit/test_schema_compat.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.errors import Conflict, ValidationError
from core.eventlog_pg import PostgresEventStore
from core.schema_compat import Compatibility
from core.schema_registry import (
    ContentRejected,
    IncompatibleSchema,
    SchemaRegistry,
    SchemaSubject,
)

pytestmark = pytest.mark.anyio


def order(required: tuple[str, ...] = ("id",), **properties: Any) -> dict[str, Any]:
    """An order with a closed content model (additionalProperties: false)."""
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": {"id": {"type": "string"}, "amount": {"type": "number"},
                           **properties}}


V1 = order()
NOTE = {"type": "string"}

# (mode, accepted evolution of V1, refused evolution of V1, pointer in the refusal)
EVOLUTIONS = [
    # New reads old: an optional field is fine (old data never has it); a required one not.
    ("BACKWARD", order(note=NOTE), order(("id", "note"), note=NOTE), "/required"),
    # Old reads new: new data may carry "note", which old's closed model refuses; dropping
    # an optional field is fine (new data never has it).
    ("FORWARD", {**V1, "properties": {"id": {"type": "string"}}}, order(note=NOTE),
     "/properties/note"),
    # Both: documentation is fine; a narrowed type breaks new-reads-old.
    ("FULL", {**V1, "description": "an order"}, order(amount={"type": "integer"}),
     "/properties/amount"),
    ("NONE", order(amount={"type": "string"}), None, None),
]


@pytest.fixture
def registry(store: PostgresEventStore) -> SchemaRegistry:
    return SchemaRegistry(store.pool)


@pytest.mark.parametrize(("mode", "accepted", "refused", "where"), EVOLUTIONS)
async def test_each_mode_accepts_and_refuses(registry: SchemaRegistry, names: str, mode: str,
                                             accepted: Any, refused: Any, where: str) -> None:
    subject = SchemaSubject.artifact(names, "orders")
    first = await registry.register(subject, V1, compatibility=mode, actor="ci")
    assert (first.version, await registry.compatibility(subject)) == (1, Compatibility(mode))
    if refused is not None:
        with pytest.raises(IncompatibleSchema) as refusal:
            await registry.register(subject, refused, actor="ci")
        assert refusal.value.code == "CONFLICT"
        assert f"\n  {where}: " in refusal.value.message
        assert [r["pointer"] for r in refusal.value.details["reasons"]] == [where]
    second = await registry.register(subject, accepted, actor="ci")
    assert [v.version for v in await registry.versions(subject)] == [1, 2]
    assert second.schema == accepted


async def test_a_refusal_explains_each_breaking_change(registry: SchemaRegistry,
                                                       names: str) -> None:
    subject = SchemaSubject.kind(names, "dataset")
    await registry.register(subject, V1, actor="ci")  # BACKWARD unless told otherwise
    with pytest.raises(IncompatibleSchema) as refusal:
        await registry.register(subject, order(("id", "customer_id"),
                                               amount={"type": "string"},
                                               customer_id={"type": "string"}), actor="ci")
    assert refusal.value.message == (
        f"schema is not BACKWARD compatible with kind:{names}/dataset:\n"
        "  /required: 'customer_id' became required [backward, version 1]\n"
        "  /properties/amount: type changed from number to string [backward, version 1]")
    assert len(await registry.versions(subject)) == 1


async def test_an_identical_schema_returns_its_version(registry: SchemaRegistry,
                                                       names: str) -> None:
    subject = SchemaSubject.artifact(names, "orders")
    first = await registry.register(subject, V1, actor="ci")
    second = await registry.register(subject, order(note=NOTE), actor="ci")
    again = await registry.register(subject, dict(reversed(list(V1.items()))), actor="other")
    assert again == first  # any earlier identical version, as Confluent does
    assert await registry.register(subject, order(note=NOTE), actor="ci") == second
    assert len(await registry.versions(subject)) == 2


async def test_transitive_mode_refuses_a_conflict_with_an_older_version_only(
        registry: SchemaRegistry, names: str) -> None:
    """v1 -> v2 broke BACKWARD while the subject was NONE. v3 (an optional field on v2) is
    BACKWARD with v2, but data written with v1 has a numeric amount, which v3 cannot read."""
    subject = SchemaSubject.artifact(names, "orders")
    await registry.register(subject, V1, compatibility="NONE", actor="ci")
    await registry.register(subject, order(amount={"type": "string"}), actor="ci")
    v3 = order(amount={"type": "string"}, note=NOTE)
    await registry.set_compatibility(subject, "BACKWARD_TRANSITIVE", actor="admin")
    assert [str(r) for r in await registry.check(subject, v3)] == [
        "/properties/amount: type changed from number to string [backward, version 1]"]
    with pytest.raises(IncompatibleSchema, match="version 1"):
        await registry.register(subject, v3, actor="ci")
    await registry.set_compatibility(subject, "BACKWARD", actor="admin")
    assert (await registry.register(subject, v3, actor="ci")).version == 3


async def test_check_registers_nothing(registry: SchemaRegistry, names: str) -> None:
    subject = SchemaSubject.artifact(names, "orders")
    assert await registry.check(subject, V1) == []  # a new subject accepts anything
    await registry.register(subject, V1, actor="ci")
    reasons = await registry.check(subject, order(("id", "note"), note=NOTE))
    assert [(r.pointer, r.message) for r in reasons] == [
        ("/required", "'note' became required")]
    assert await registry.check(subject, order(note=NOTE)) == []
    assert len(await registry.versions(subject)) == 1


async def test_a_mode_that_differs_from_the_subjects_is_refused(registry: SchemaRegistry,
                                                                names: str) -> None:
    subject = SchemaSubject.artifact(names, "orders")
    await registry.register(subject, V1, compatibility="FULL", actor="ci")
    with pytest.raises(Conflict, match="is FULL; change its compatibility first"):
        await registry.register(subject, order(note=NOTE), compatibility="NONE", actor="ci")


async def test_an_invalid_schema_or_subject_is_refused(registry: SchemaRegistry,
                                                       names: str) -> None:
    subject = SchemaSubject.artifact(names, "orders")
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        await registry.register(subject, {"type": "strin"}, actor="ci")
    with pytest.raises(ValidationError, match="unknown compatibility"):
        await registry.register(subject, V1, compatibility="SIDEWAYS", actor="ci")
    with pytest.raises(ValidationError, match="a subject is artifact:NS/NAME"):
        SchemaSubject.parse(f"bucket:{names}/x")
    assert SchemaSubject.parse(f"kind:{names}/model") == SchemaSubject.kind(names, "model")
    assert await registry.versions(subject) == []


async def test_concurrent_registrations_get_distinct_numbers(registry: SchemaRegistry,
                                                             names: str) -> None:
    subject = SchemaSubject.artifact(names, "orders")
    await registry.register(subject, V1, compatibility="NONE", actor="ci")
    schemas = [order(**{f"f{i}": NOTE}) for i in range(12)]
    created = await asyncio.gather(*(registry.register(subject, s, actor="ci")
                                     for s in schemas + schemas))  # each one twice
    assert sorted({v.version for v in created}) == list(range(2, 14))
    assert [v.version for v in await registry.versions(subject)] == list(range(1, 14))


async def test_the_artifact_subject_wins_over_namespace_and_kind(registry: SchemaRegistry,
                                                                 names: str) -> None:
    by_kind = await registry.register(SchemaSubject.kind(names, "dataset"), V1, actor="ci")
    assert await registry.current_for(names, "orders", "dataset") == by_kind
    assert await registry.current_for(names, "orders", "model") is None
    assert await registry.current_for(names, "orders", None) is None
    own = await registry.register(SchemaSubject.artifact(names, "orders"), order(note=NOTE),
                                  actor="ci")
    assert await registry.current_for(names, "orders", "dataset") == own
    assert await registry.current_for(names, "orders", None) == own
    assert await registry.current_for(names, "refunds", "dataset") == by_kind
    newer = await registry.register(SchemaSubject.kind(names, "dataset"), order(note=NOTE),
                                    actor="ci")
    assert await registry.current_for(names, "refunds", "dataset") == newer


async def test_refused_content_names_each_pointer_and_is_recorded(
        registry: SchemaRegistry, store: PostgresEventStore, names: str) -> None:
    rows = {"type": "array", "items": order()}
    current = await registry.register(SchemaSubject.kind(names, "dataset"), rows, actor="ci")
    good = [{"id": "o1", "amount": 3}]
    assert await registry.validate_ingest(names, "orders", "dataset", content=good,
                                          content_type="json", producer="etl",
                                          actor="tok") == current
    bad = [{"id": "o1", "amount": "3"}, {"amount": 1, "x": 0}]
    with pytest.raises(ContentRejected) as refusal:
        await registry.validate_ingest(names, "orders", "dataset", content=bad,
                                       content_type="json", producer="etl", actor="tok")
    assert refusal.value.code == "VALIDATION"
    assert refusal.value.message == (
        f"content of {names}/orders does not match schema kind:{names}/dataset@1"
        " (3 violations):\n"
        "  /0/amount: '3' is not of type 'number'\n"
        "  /1: 'id' is a required property\n"
        "  /1/x: not allowed: additionalProperties is false")
    with pytest.raises(ContentRejected, match="text content: the schema applies to JSON"):
        await registry.validate_ingest(names, "orders", "dataset", content="id,amount",
                                       content_type="text", producer="csv", actor="tok")
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT producer, actor, subject, schema_version, violations FROM ingest_rejections"
            " WHERE namespace = %s AND name = 'orders' ORDER BY id", (names,))
        recorded = await cursor.fetchall()
    assert [row[:4] for row in recorded] == [
        ("etl", "tok", f"kind:{names}/dataset", 1), ("csv", "tok", f"kind:{names}/dataset", 1)]
    assert [v["pointer"] for v in recorded[0][4]] == ["/0/amount", "/1", "/1/x"]


async def test_without_a_schema_content_is_not_validated(registry: SchemaRegistry,
                                                         names: str) -> None:
    assert await registry.validate_ingest(names, "orders", "dataset", content=b"\x00",
                                          content_type="bytes", producer=None,
                                          actor=None) is None
