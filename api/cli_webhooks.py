"""CLI for webhooks (create, list, delete, the delivery log) and retention (policies, apply,
archive). Everything goes through the GraphQL API, so the admin scope is checked there."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from artifactlog import Client
from core.errors import ValidationError

ClientFor = Callable[[], Client]

WEBHOOK_FIELDS = "id url eventTypes namespaces description checkpoint createdAt createdBy"
CREATE = f"""mutation($url: String!, $types: [String!], $ns: [String!], $d: String,
  $from: Int) {{ createWebhook(url: $url, eventTypes: $types, namespaces: $ns,
  description: $d, fromPosition: $from) {{ secret webhook {{ {WEBHOOK_FIELDS} }} }} }}"""
LIST = f"query {{ webhooks {{ {WEBHOOK_FIELDS} }} }}"
DELETE = "mutation($id: String!) { deleteWebhook(id: $id) }"
DELIVERIES = """query($id: String!, $status: String, $first: Int!) {
  webhookDeliveries(webhookId: $id, status: $status, first: $first) { id position eventType
    namespace name status attemptCount nextAttemptAt lastError createdAt deliveredAt
    attempts { attempt at statusCode error durationMs } } }"""
SET_POLICY = """mutation($ns: String!, $days: Int!) {
  setRetentionPolicy(namespace: $ns, draftDays: $days) { namespace draftDays } }"""
POLICIES = "query { retentionPolicies { namespace draftDays updatedAt updatedBy } }"
REMOVE_POLICY = "mutation($ns: String!) { removeRetentionPolicy(namespace: $ns) }"
APPLY = """mutation($dry: Boolean!, $ns: String) { applyRetention(dryRun: $dry, namespace: $ns)
  { dryRun purged { namespace name number digest size } digestsDeleted digestsKept } }"""
ARCHIVE = """mutation($ns: String!, $name: String!, $reason: String) {
  archiveArtifact(namespace: $ns, name: $name, reason: $reason) }"""
UNARCHIVE = """mutation($ns: String!, $name: String!, $reason: String) {
  unarchiveArtifact(namespace: $ns, name: $name, reason: $reason) }"""


def register(sub: Any, client: ClientFor) -> None:
    hooks = sub.add_parser("webhooks", help="HTTP callbacks for chosen events (admin)")
    actions = hooks.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="subscribe a URL; prints the secret once")
    create.add_argument("url")
    create.add_argument("--event-type", action="append", default=[],
                        help="e.g. VersionPromoted (repeatable; none: every type)")
    create.add_argument("--namespace", action="append", default=[],
                        help="repeatable; none: every namespace")
    create.add_argument("--description")
    create.add_argument("--from-position", type=int,
                        help="deliver events after this log position (default: from now)")
    create.set_defaults(handler=lambda args, settings: cmd_create(args, client()))
    actions.add_parser("list", help="every webhook (never its secret)").set_defaults(
        handler=lambda args, settings: cmd_list(client()))
    delete = actions.add_parser("delete", help="remove a webhook and its delivery log")
    delete.add_argument("id")
    delete.set_defaults(handler=lambda args, settings: cmd_delete(args, client()))
    log = actions.add_parser("deliveries", help="a webhook's delivery log, newest first")
    log.add_argument("id")
    log.add_argument("--status", choices=["PENDING", "DELIVERED", "FAILED"])
    log.add_argument("--first", type=int, default=50)
    log.add_argument("--json", action="store_true", help="print JSON, attempts included")
    log.set_defaults(handler=lambda args, settings: cmd_deliveries(args, client()))
    register_retention(sub, client)


def register_retention(sub: Any, client: ClientFor) -> None:
    retention = sub.add_parser("retention", help="purge old never-promoted drafts (admin)")
    actions = retention.add_subparsers(required=True, metavar="ACTION")
    policy = actions.add_parser("set", help="purge NAMESPACE's drafts never promoted after "
                                "DAYS days")
    policy.add_argument("namespace")
    policy.add_argument("days", type=int)
    policy.set_defaults(handler=lambda args, settings: cmd_set_policy(args, client()))
    actions.add_parser("list", help="the policies").set_defaults(
        handler=lambda args, settings: cmd_policies(client()))
    remove = actions.add_parser("remove", help="remove a namespace's policy")
    remove.add_argument("namespace")
    remove.set_defaults(handler=lambda args, settings: cmd_remove_policy(args, client()))
    apply = actions.add_parser("apply", help="apply the policies now")
    apply.add_argument("--dry-run", action="store_true", help="say what would go; write nothing")
    apply.add_argument("--namespace", help="only this namespace's policy")
    apply.add_argument("--json", action="store_true")
    apply.set_defaults(handler=lambda args, settings: cmd_apply(args, client()))
    for verb, document in (("archive", ARCHIVE), ("unarchive", UNARCHIVE)):
        command = sub.add_parser(verb, help=f"{verb} an artifact (archived: hidden from "
                                 "listings, history kept)")
        command.add_argument("artifact", metavar="NAMESPACE/NAME")
        command.add_argument("--reason")
        command.set_defaults(handler=lambda args, settings, verb=verb, document=document:
                             cmd_archive(args, client(), verb, document))


def cmd_create(args: argparse.Namespace, api: Client) -> int:
    created = api.execute(CREATE, {"url": args.url, "types": args.event_type or None,
                                   "ns": args.namespace or None, "d": args.description,
                                   "from": args.from_position})["createWebhook"]
    webhook = created["webhook"]
    print(f"webhook {webhook['id']} -> {webhook['url']} (from position "
          f"{webhook['checkpoint']})")
    print(f"signing secret (shown once): {created['secret']}")
    return 0


def cmd_list(api: Client) -> int:
    for w in api.execute(LIST)["webhooks"]:
        print(f"{w['id']}  {w['url']}  types={','.join(w['eventTypes']) or '*'}  "
              f"namespaces={','.join(w['namespaces']) or '*'}  checkpoint={w['checkpoint']}")
    return 0


def cmd_delete(args: argparse.Namespace, api: Client) -> int:
    api.execute(DELETE, {"id": args.id})
    print(f"webhook {args.id} deleted")
    return 0


def cmd_deliveries(args: argparse.Namespace, api: Client) -> int:
    found = api.execute(DELIVERIES, {"id": args.id, "status": args.status,
                                     "first": args.first})["webhookDeliveries"]
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{'position':>9}  {'status':<9} {'tries':>5}  {'event':<18} {'artifact':<30} error")
    for d in found:
        print(f"{d['position']:>9}  {d['status']:<9} {d['attemptCount']:>5}  "
              f"{d['eventType']:<18} {d['namespace'] + '/' + d['name']:<30} "
              f"{d['lastError'] or ''}")
    return 0


def cmd_set_policy(args: argparse.Namespace, api: Client) -> int:
    found = api.execute(SET_POLICY, {"ns": args.namespace, "days": args.days})
    policy = found["setRetentionPolicy"]
    print(f"retention of {policy['namespace']}: purge drafts never promoted after "
          f"{policy['draftDays']} days")
    return 0


def cmd_policies(api: Client) -> int:
    for p in api.execute(POLICIES)["retentionPolicies"]:
        print(f"{p['namespace']:<30} {p['draftDays']:>6} days  (set by {p['updatedBy']} "
              f"{p['updatedAt']})")
    return 0


def cmd_remove_policy(args: argparse.Namespace, api: Client) -> int:
    if not api.execute(REMOVE_POLICY, {"ns": args.namespace})["removeRetentionPolicy"]:
        raise ValidationError(f"namespace {args.namespace} has no retention policy")
    print(f"retention policy of {args.namespace} removed")
    return 0


def cmd_apply(args: argparse.Namespace, api: Client) -> int:
    report = api.execute(APPLY, {"dry": args.dry_run, "ns": args.namespace})["applyRetention"]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    would = "would purge" if report["dryRun"] else "purged"
    for p in report["purged"]:
        print(f"{would} {p['namespace']}/{p['name']}@{p['number']} ({p['size']} bytes, "
              f"{p['digest'][:12]})")
    print(f"{len(report['purged'])} version(s) {would}; content removed for "
          f"{len(report['digestsDeleted'])} digest(s), kept for {len(report['digestsKept'])} "
          "still used by other versions")
    return 0


def cmd_archive(args: argparse.Namespace, api: Client, verb: str, document: str) -> int:
    namespace, sep, name = args.artifact.partition("/")
    if not sep or not namespace or not name:
        raise ValidationError(f"expected NAMESPACE/NAME, got {args.artifact!r}")
    field = f"{verb}Artifact"
    position = api.execute(document, {"ns": namespace, "name": name,
                                      "reason": args.reason})[field]
    print(f"{args.artifact} {verb}d; position {position}")
    return 0
