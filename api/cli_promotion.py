"""CLI for promotions under policies: dry runs, overrides, requests and approvals, policies."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from artifactlog import Client
from artifactlog.refs import parse_ref
from core.errors import PolicyRefused, ValidationError

ClientFor = Callable[[], Client]

CHECK = """query($ref: VersionRefInput!) { promotionCheck(ref: $ref) { allowed
  version { number label stage } checks { rule passed reason } } }"""
PROMOTE = """mutation($ref: VersionRefInput!, $reason: String, $override: Boolean!) {
  promote(ref: $ref, reason: $reason, override: $override) { position previous { number } } }"""
REQUEST = """mutation($ref: VersionRefInput!, $reason: String) {
  requestPromotion(ref: $ref, reason: $reason) }"""
APPROVE = """mutation($ref: VersionRefInput!, $reason: String) {
  approvePromotion(ref: $ref, reason: $reason) { position previous { number } } }"""
POLICY = """mutation($ns: String!, $name: String, $rules: JSON!) {
  setPromotionPolicy(namespace: $ns, name: $name, rules: $rules) }"""


def register(sub: Any, client: ClientFor) -> None:
    promote = sub.add_parser("promote", help="make a version the production version")
    promote.add_argument("artifact", metavar="NAMESPACE/NAME")
    promote.add_argument("number", type=int)
    promote.add_argument("--reason")
    promote.add_argument("--dry-run", action="store_true",
                         help="evaluate the promotion policies, promote nothing")
    promote.add_argument("--override", action="store_true",
                         help="admin: promote past failing policies (needs --reason)")
    promote.add_argument("--request", action="store_true",
                         help="ask for a promotion a second actor must approve")
    promote.add_argument("--approve", action="store_true",
                         help="approve a requested promotion (not as its requester)")
    promote.set_defaults(handler=lambda args, settings: cmd_promote(args, client()))

    policy = sub.add_parser("policy", help="set the promotion policy of NS/NAME, or of NS")
    policy.add_argument("target", metavar="NS[/NAME]")
    policy.add_argument("rules", help='a JSON array, e.g. [{"type": "approval"}]')
    policy.set_defaults(handler=lambda args, settings: cmd_policy(args, client()))


def cmd_promote(args: argparse.Namespace, api: Client) -> int:
    where = f"{args.artifact}@{args.number}"
    ref = parse_ref(where).to_input()
    if args.dry_run:
        check = api.execute(CHECK, {"ref": ref})["promotionCheck"]
        for c in check["checks"]:
            print(f"{'pass' if c['passed'] else 'FAIL'}  {c['rule']}: {c['reason']}")
        print(f"{where} {'may' if check['allowed'] else 'may NOT'} be promoted"
              + ("" if check["checks"] else " (no policies)"))
        return 0 if check["allowed"] else 3
    if args.request:
        position = api.execute(REQUEST, {"ref": ref, "reason": args.reason})
        print(f"promotion of {where} requested; position {position['requestPromotion']}")
        return 0
    document, field = (APPROVE, "approvePromotion") if args.approve else (PROMOTE, "promote")
    variables: dict[str, Any] = {"ref": ref, "reason": args.reason}
    if not args.approve:
        variables["override"] = args.override
    try:
        result = api.execute(document, variables)[field]
    except PolicyRefused as exc:
        raise PolicyRefused(f"{exc.message} (see `artifactlog promote {args.artifact} "
                            f"{args.number} --dry-run`)") from exc
    previous = result["previous"]
    print(f"{where} is now PRODUCTION" + (f" (was @{previous['number']})" if previous else "")
          + f"; position {result['position']}")
    return 0


def cmd_policy(args: argparse.Namespace, api: Client) -> int:
    namespace, _, name = args.target.partition("/")
    try:
        rules = json.loads(args.rules)
    except ValueError as exc:
        raise ValidationError(f"rules are not valid JSON: {exc}") from exc
    position = api.execute(POLICY, {"ns": namespace, "name": name or None, "rules": rules})
    print(f"promotion policy of {args.target} set; position {position['setPromotionPolicy']}")
    return 0
