"""CLI commands that look into history: diff, lineage (with impact analysis) and the replay
trace of one artifact. Readable by a person (colour only on a terminal) or ``--json``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from artifactlog import Client
from artifactlog.refs import parse_ref
from artifactlog.types import Diff, Lineage, Version

REPLAY = """query($ns: String!, $name: String!, $v: Int, $p: Int) {
  replay(namespace: $ns, name: $name, toVersion: $v, toPosition: $p) {
    event { position type streamVersion recordedAt payload metadata } state } }"""
IMPACT = """query($ref: VersionRefInput!) { impact(ref: $ref) { namespace name number label
  stage } }"""
COLOURS = {"add": "32", "added": "32", "remove": "31", "removed": "31", "replace": "33",
           "changed": "33"}

ClientFor = Callable[[], Client]


def register(sub: Any, client: ClientFor) -> None:
    diff = sub.add_parser("diff", help="what changed between two versions (NS/NAME@N)")
    diff.add_argument("before", metavar="FROM")
    diff.add_argument("after", metavar="TO")
    diff.add_argument("--key", action="append", help="record key column (repeatable)")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.set_defaults(handler=lambda args, settings: cmd_diff(args, client()))

    lineage = sub.add_parser("lineage", help="where a version came from, or what it feeds")
    lineage.add_argument("ref", metavar="NS/NAME[@N]")
    lineage.add_argument("--direction", choices=["up", "down"], default="up")
    lineage.add_argument("--depth", type=int)
    lineage.add_argument("--format", choices=["text", "mermaid", "dot", "json"], default="text")
    lineage.add_argument("--impact", action="store_true",
                         help="the PRODUCTION versions downstream of this one")
    lineage.set_defaults(handler=lambda args, settings: cmd_lineage(args, client()))


def cmd_diff(args: argparse.Namespace, api: Client) -> int:
    diff = api.diff(args.before, args.after, key=args.key)
    if args.json:
        print(json.dumps(diff_json(diff), indent=2, default=str))
        return 0
    print(f"{name(diff.before)} -> {name(diff.after)}: "
          + ("identical" if diff.identical else json.dumps(diff.summary)))
    colour = sys.stdout.isatty()
    for change in diff.changes:
        line = f"{change.section:<8} {change.op:<8} {change.path or '/'}"
        detail = change.after if change.op in ("add", "added") else (
            change.before if change.op in ("remove", "removed") else
            f"{json.dumps(change.before)} -> {json.dumps(change.after)}")
        text = f"{line}  {detail if isinstance(detail, str) else json.dumps(detail)}"
        print(f"\033[{COLOURS.get(change.op, '0')}m{text}\033[0m" if colour else text)
    return 0


def diff_json(diff: Diff) -> dict[str, Any]:
    return {"from": name(diff.before), "to": name(diff.after), "identical": diff.identical,
            "summary": diff.summary,
            "changes": [{"section": c.section, "op": c.op, "path": c.path, "before": c.before,
                         "after": c.after} for c in diff.changes]}


def cmd_lineage(args: argparse.Namespace, api: Client) -> int:
    if args.impact:
        found = api.execute(IMPACT, {"ref": parse_ref(args.ref).to_input()})["impact"]
        for v in found:
            print(f"{v['namespace']}/{v['name']}@{v['number']} ({v['label']}) {v['stage']}")
        if not found:
            print("no PRODUCTION version downstream")
        return 0
    graph = api.lineage(args.ref, "UPSTREAM" if args.direction == "up" else "DOWNSTREAM",
                        args.depth)
    print({"mermaid": mermaid, "dot": dot, "json": lineage_json, "text": text}[args.format](
        graph))
    return 0


def name(version: Version) -> str:
    return f"{version.namespace}/{version.name}@{version.number}"


def node_id(version: Version) -> str:
    return "".join(c if c.isalnum() else "_" for c in name(version))


def mermaid(graph: Lineage) -> str:
    lines = ["graph LR"]
    for v in graph.nodes:
        lines.append(f'  {node_id(v)}["{name(v)} ({v.label}, {v.stage})"]')
    lines += [f"  {node_id(e.parent)} --> {node_id(e.child)}" for e in graph.edges]
    return "\n".join(lines)


def dot(graph: Lineage) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for v in graph.nodes:
        lines.append(f'  "{name(v)}" [label="{name(v)}\\n{v.label} {v.stage}"];')
    lines += [f'  "{name(e.parent)}" -> "{name(e.child)}";' for e in graph.edges]
    return "\n".join([*lines, "}"])


def text(graph: Lineage) -> str:
    lines = [f"{name(graph.root)} ({graph.root.stage})"]
    lines += [f"  {name(e.parent)} -> {name(e.child)}" for e in graph.edges]
    return "\n".join(lines)


def lineage_json(graph: Lineage) -> str:
    return json.dumps({"root": name(graph.root), "nodes": [name(v) for v in graph.nodes],
                       "edges": [[name(e.parent), name(e.child)] for e in graph.edges]},
                      indent=2)


def print_replay(api: Client, artifact: str, to_version: int | None,
                 to_position: int | None, as_json: bool) -> int:
    namespace, _, artifact_name = artifact.partition("/")
    steps = api.execute(REPLAY, {"ns": namespace, "name": artifact_name, "v": to_version,
                                 "p": to_position})["replay"]
    if as_json:
        print(json.dumps(steps, indent=2))
        return 0
    for step in steps:
        event, state = step["event"], step["state"]
        stages = " ".join(f"{v['number']}:{v['stage'][0]}" for v in state["versions"])
        print(f"{event['position']:>8} {event['recordedAt']} {event['type']:<17} "
              f"{json.dumps(event['payload'].get('number'))}  -> production="
              f"{state['production']} [{stages}]")
    return 0
