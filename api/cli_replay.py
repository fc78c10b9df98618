"""`artifactlog replay`: rebuild a projection (in place or into shadow tables), print one
artifact's trace, re-publish a slice of history to a NATS subject, or run transforms over an
artifact's versions.

Rebuilds and traces go through the API (the process that owns the projections); publishing
and transforms read the Postgres log directly (DATABASE_URL, or the embedded server of a
running `artifactlog up`), so they never load the API or touch a projection.

Exit status of ``--transform``: 0 when every version ran (and, with ``--against``, the two
outputs were equal everywhere), 1 when outputs differed, 3 when the user's function raised
on some version; 2 is a usage error (a bad MODULE:FUNCTION, say).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from psycopg_pool import AsyncConnectionPool

from api import cli_inspect
from artifactlog import Client
from core.errors import ValidationError
from core.replay_transform import VersionRun, jsonable
from core.settings import Settings

REBUILD = """mutation($name: String!, $from: Int, $shadow: Boolean!) {
  rebuildProjection(name: $name, fromPosition: $from, shadow: $shadow) {
    projection events seconds } }"""
DIFFERENT, FAILED = 1, 3

ClientFor = Callable[[], Client]


def register(sub: Any, client: ClientFor) -> None:
    replay = sub.add_parser(
        "replay", help="rebuild a projection, trace an artifact, re-publish history to a "
        "subject, or run transforms over an artifact's versions",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = replay.add_mutually_exclusive_group()  # none of them: --artifact is the trace
    mode.add_argument("--projection", help="rebuild: version_history or analytics")
    mode.add_argument("--publish", metavar="SUBJECT",
                      help="re-publish the selected events to this NATS subject")
    mode.add_argument("--transform", metavar="MODULE:FUNCTION",
                      help="run a function over every version of --artifact")
    replay.add_argument("--artifact", metavar="NS/NAME",
                        help="alone: print the replay trace; with --publish: that artifact's"
                             " events; with --transform: the artifact")
    replay.add_argument("--shadow", action="store_true",
                        help="rebuild into new tables while the live ones serve, then switch")
    replay.add_argument("--from-position", type=int,
                        help="rebuild: only artifacts changed after it; publish: first position"
                             " (inclusive)")
    replay.add_argument("--to-position", type=int,
                        help="trace: stop at it; publish: last position (inclusive)")
    replay.add_argument("--to-version", type=int, help="trace: stop at this version")
    replay.add_argument("--since", help="publish: recorded at or after (ISO time with zone)")
    replay.add_argument("--until", help="publish: recorded at or before (ISO time with zone)")
    replay.add_argument("--namespace", help="publish: only this namespace's events")
    replay.add_argument("--rate", type=float, help="publish: at most this many messages/s")
    replay.add_argument("--against", metavar="MODULE:FUNCTION",
                        help="transform: diff against this function's outputs")
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.set_defaults(handler=lambda args, settings: cmd_replay(args, settings, client))


def cmd_replay(args: argparse.Namespace, settings: Settings, client: ClientFor) -> int:
    check_options(args)
    if args.projection:
        return rebuild(args, client())
    if args.publish:
        return asyncio.run(publish(args, settings))
    if args.transform:
        return asyncio.run(transform(args, settings))
    if not args.artifact:
        raise ValidationError("replay needs --projection, --publish, --transform or --artifact")
    split(args.artifact)
    return cli_inspect.print_replay(client(), args.artifact, args.to_version,
                                    args.to_position, args.json)


# Options that mean something in one mode only; given elsewhere they would be ignored.
MODE_OPTIONS = {"shadow": "projection", "against": "transform", "since": "publish",
                "until": "publish", "namespace": "publish", "rate": "publish"}


def check_options(args: argparse.Namespace) -> None:
    for option, mode in MODE_OPTIONS.items():
        if getattr(args, option) not in (None, False) and not getattr(args, mode):
            raise ValidationError(f"--{option} only goes with --{mode}")
    if args.shadow and args.from_position is not None:
        raise ValidationError("--shadow rebuilds everything; drop --from-position")


def rebuild(args: argparse.Namespace, api: Client) -> int:
    result = api.execute(REBUILD, {"name": args.projection, "from": args.from_position,
                                   "shadow": args.shadow})["rebuildProjection"]
    rate = result["events"] / result["seconds"] if result["seconds"] else 0.0
    how = "; built in shadow tables, then switched" if args.shadow else ""
    print(f"rebuilt {result['projection']} from the log: {result['events']} events in "
          f"{result['seconds']:.2f}s ({rate:,.0f} events/s){how}")
    return 0


async def publish(args: argparse.Namespace, settings: Settings) -> int:
    from core.replay_publish import publish_slice
    from core.replay_slice import HistorySlice

    namespace, name = split(args.artifact) if args.artifact else (args.namespace, None)
    if args.artifact and args.namespace and args.namespace != namespace:
        raise ValidationError("--namespace and --artifact disagree")
    chosen = HistorySlice(args.from_position, args.to_position, moment("--since", args.since),
                          moment("--until", args.until), namespace, name)
    async with direct(settings, nats=True) as (pool, nats):
        assert nats is not None
        result = await publish_slice(pool, nats, settings, args.publish, chosen, rate=args.rate)
    how = "JetStream, acknowledged" if result.jetstream else "core NATS"
    print(f"published {result.events} events to {result.subject} ({how}) in "
          f"{result.seconds:.2f}s")
    return 0


async def transform(args: argparse.Namespace, settings: Settings) -> int:
    from core.content_store import content_store_for
    from core.eventlog_pg import PostgresEventStore
    from core.replay_transform import TransformReplay, load_transform
    from core.services import ArtifactService

    if not args.artifact:
        raise ValidationError("--transform needs --artifact NS/NAME")
    namespace, name = split(args.artifact)
    first = load_transform(args.transform)
    second = load_transform(args.against) if args.against else None
    async with direct(settings) as (pool, _):
        store = PostgresEventStore(pool, content_store_for(settings, pool))
        service = ArtifactService(store, max_content_bytes=settings.max_content_bytes)
        runs = await TransformReplay(service).run(namespace, name, first, second)
    print_runs(args.artifact, runs, compared=second is not None, as_json=args.json)
    if any(run.errors for run in runs):
        return FAILED
    return DIFFERENT if any(run.differs for run in runs) else 0


@dataclass(frozen=True)
class Direct:
    database_url: str
    nats_url: str | None


def direct_urls(settings: Settings) -> Direct:
    """DATABASE_URL / NATS_URL, or the embedded servers of a running `artifactlog up`."""
    from api.cli import database_url_for_cli
    from core.stack import read_state

    nats_url = settings.nats_url
    if not nats_url and (port := read_state(settings.home).get("nats_port")):
        nats_url = f"nats://127.0.0.1:{port}"
    return Direct(database_url_for_cli(settings), nats_url)


@asynccontextmanager
async def direct(settings: Settings, *, nats: bool = False
                 ) -> AsyncIterator[tuple[AsyncConnectionPool, NatsClient | None]]:
    from core.db import open_pool
    from core.jetstream import connect

    urls = direct_urls(settings)
    if nats and not urls.nats_url:
        raise ValidationError("set NATS_URL, or start the embedded system with "
                              "`artifactlog up` first")
    pool = await open_pool(urls.database_url, max_size=4)
    try:
        client = await connect(urls.nats_url, name="artifactlog-replay") if (
            nats and urls.nats_url) else None
        try:
            yield pool, client
        finally:
            if client is not None:
                await client.drain()
    finally:
        await pool.close()


def split(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise ValidationError(f"expected NAMESPACE/NAME, got {text!r}")
    return namespace, name


def moment(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(f"{option} is not an ISO time: {text!r}") from exc
    if value.tzinfo is None:
        raise ValidationError(f"{option} needs a time zone (e.g. {text}Z)")
    return value


def print_runs(artifact: str, runs: list[VersionRun], *, compared: bool,
               as_json: bool) -> None:
    if as_json:
        print(json.dumps({"artifact": artifact, "versions": [run_json(r) for r in runs],
                          "differences": sum(r.differs for r in runs),
                          "errors": sum(bool(r.errors) for r in runs)}, indent=2, default=str))
        return
    for run in runs:
        head = f"{artifact}@{run.number} ({run.label})"
        if run.errors:
            print(f"{head}: ERROR " + "; ".join(run.errors))
        elif not compared:
            print(f"{head}: {preview(run.transform.output)}")
        elif run.differs:
            print(f"{head}: differs {json.dumps(run.summary)}")
            for c in run.changes:
                print(f"    {c.section:<8} {c.op:<8} {c.path or '/'}  "
                      f"{preview(c.before)} -> {preview(c.after)}")
        else:
            print(f"{head}: same")
    failed, differing = sum(bool(r.errors) for r in runs), sum(r.differs for r in runs)
    print(f"{len(runs)} versions; {differing} differing; {failed} with errors")


def run_json(run: VersionRun) -> dict[str, Any]:
    found: dict[str, Any] = {"number": run.number, "label": run.label,
                             "errors": run.errors}
    if run.against is None:
        found["output"] = jsonable(run.transform.output)
        return found
    return {**found, "differs": run.differs, "summary": run.summary, "total": run.total,
            "changes": [{"section": c.section, "op": c.op, "path": c.path,
                         "before": c.before, "after": c.after} for c in run.changes]}


def preview(value: Any, limit: int = 120) -> str:
    text = json.dumps(jsonable(value)) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."
