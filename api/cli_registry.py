"""CLI for the schema registry: register, check, list versions, rejections."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artifactlog import Client
from core.errors import ValidationError

ClientFor = Callable[[], Client]

REGISTER = """mutation($s: String!, $schema: JSON!, $mode: String) {
  registerSchema(subject: $s, schema: $schema, compatibility: $mode) { subject version } }"""
CHECK = """query($s: String!, $schema: JSON!) { checkSchemaCompatibility(subject: $s,
  schema: $schema) { compatible reasons { pointer message } } }"""
VERSIONS = """query($s: String!) { schemaVersions(subject: $s) { version fingerprint createdAt
  createdBy schema } }"""
REJECTIONS = """query($ns: String!, $name: String) { ingestRejections(namespace: $ns,
  name: $name) { name producer subject schemaVersion violations rejectedAt } }"""


def register(sub: Any, client: ClientFor) -> None:
    registry = sub.add_parser("registry", help="JSON Schemas that ingested content must match")
    actions = registry.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser("register", help="register a schema version for a subject")
    add.add_argument("subject", help="artifact:NS/NAME or kind:NS/KIND")
    add.add_argument("file", help="the JSON Schema")
    add.add_argument("--compatibility", help="mode of a new subject (default BACKWARD)")
    add.set_defaults(handler=lambda args, settings: cmd_register(args, client()))
    check = actions.add_parser("check", help="what registering a schema would break")
    check.add_argument("subject")
    check.add_argument("file")
    check.set_defaults(handler=lambda args, settings: cmd_check(args, client()))
    versions = actions.add_parser("versions", help="a subject's schema versions")
    versions.add_argument("subject")
    versions.set_defaults(handler=lambda args, settings: cmd_versions(args, client()))
    rejections = actions.add_parser("rejections", help="ingests a schema refused")
    rejections.add_argument("namespace")
    rejections.add_argument("--name")
    rejections.set_defaults(handler=lambda args, settings: cmd_rejections(args, client()))


def read_schema(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ValidationError(f"{path} is not valid JSON: {exc}") from exc


def cmd_register(args: argparse.Namespace, api: Client) -> int:
    found = api.execute(REGISTER, {"s": args.subject, "schema": read_schema(args.file),
                                   "mode": args.compatibility})["registerSchema"]
    print(f"{found['subject']} version {found['version']}")
    return 0


def cmd_check(args: argparse.Namespace, api: Client) -> int:
    verdict = api.execute(CHECK, {"s": args.subject, "schema": read_schema(args.file)})[
        "checkSchemaCompatibility"]
    for reason in verdict["reasons"]:
        print(f"{reason['pointer'] or '/'}: {reason['message']}")
    print("compatible" if verdict["compatible"] else "NOT compatible")
    return 0 if verdict["compatible"] else 3


def cmd_versions(args: argparse.Namespace, api: Client) -> int:
    for v in api.execute(VERSIONS, {"s": args.subject})["schemaVersions"]:
        print(f"{v['version']:>4}  {v['fingerprint'][:12]}  {v['createdAt']}  "
              f"{v['createdBy'] or '-'}")
    return 0


def cmd_rejections(args: argparse.Namespace, api: Client) -> int:
    found = api.execute(REJECTIONS, {"ns": args.namespace, "name": args.name})
    for r in found["ingestRejections"]:
        print(f"{r['rejectedAt']}  {args.namespace}/{r['name']}  producer={r['producer']}  "
              f"{r['subject']}@{r['schemaVersion']}  {len(r['violations'])} violation(s)")
    return 0
