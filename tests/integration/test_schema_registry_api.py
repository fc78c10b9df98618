"""The schema registry through GraphQL: ingests validated against the registered schema
(offending values named by JSON pointer), refusals recorded per producer, compatibility."""

from __future__ import annotations

from typing import Any

import pytest

from core.eventlog_pg import PostgresEventStore
from core.settings import Settings
from tests.integration.test_graphql_log import client_for, gql

pytestmark = pytest.mark.anyio

ORDER = {"type": "object", "additionalProperties": False, "required": ["id", "amount"],
         "properties": {"id": {"type": "integer"}, "amount": {"type": "number"},
                        "note": {"type": "string"}}}
REGISTER = """mutation($s: String!, $schema: JSON!, $mode: String) {
  registerSchema(subject: $s, schema: $schema, compatibility: $mode) { subject version } }"""
INGEST = """mutation($input: IngestInput!) { ingest(input: $input) { version { number } } }"""


async def test_content_is_validated_against_the_registered_schema(
    store: PostgresEventStore, settings: Settings, names: str
) -> None:
    async with client_for(store, settings) as http:
        registered = await gql(http, REGISTER, s=f"kind:{names}/order", schema=ORDER,
                               mode="BACKWARD")
        assert registered["data"]["registerSchema"] == {"subject": f"kind:{names}/order",
                                                        "version": 1}
        good = await gql(http, INGEST, input={"namespace": names, "name": "o1",
                                              "kind": "order", "content": {"id": 1,
                                                                           "amount": 2.5}})
        assert "errors" not in good, good
        bad = await gql(http, INGEST, input={
            "namespace": names, "name": "o1", "kind": "order", "producer": "shop-7",
            "content": {"id": "x", "amount": 2.5, "extra": 1}})
        error = bad["errors"][0]
        assert error["extensions"]["code"] == "VALIDATION"
        pointers = sorted(v["pointer"] for v in error["extensions"]["violations"])
        assert pointers == ["/extra", "/id"]  # the field not allowed, and the bad id
        assert "/id" in error["message"]
        rejections = await gql(http, """query($ns: String!) { ingestRejections(namespace: $ns)
            { name producer subject schemaVersion violations } }""", ns=names)
        [rejected] = rejections["data"]["ingestRejections"]
        assert (rejected["producer"], rejected["schemaVersion"]) == ("shop-7", 1)
        assert len(await store.load_stream(names, "o1")) == 1  # the refusal wrote nothing


async def test_compatibility_is_checked_and_explained(store: PostgresEventStore,
                                                      settings: Settings, names: str) -> None:
    subject = f"kind:{names}/order"
    breaking: dict[str, Any] = {**ORDER, "required": [*ORDER["required"], "note"]}
    async with client_for(store, settings) as http:
        await gql(http, REGISTER, s=subject, schema=ORDER, mode="BACKWARD")
        check = await gql(http, """query($s: String!, $schema: JSON!) {
            checkSchemaCompatibility(subject: $s, schema: $schema) { compatible
            reasons { pointer message } } }""", s=subject, schema=breaking)
        verdict = check["data"]["checkSchemaCompatibility"]
        assert verdict["compatible"] is False
        assert any("note" in r["message"] for r in verdict["reasons"])
        refused = await gql(http, REGISTER, s=subject, schema=breaking)
        assert refused["errors"][0]["extensions"]["code"] == "CONFLICT"
        versions = await gql(http, "query($s: String!) { schemaVersions(subject: $s) {"
                                   " version } }", s=subject)
        assert versions["data"]["schemaVersions"] == [{"version": 1}]
