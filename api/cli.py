"""The `artifactlog` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from api import (
    cli_capture,
    cli_inspect,
    cli_promotion,
    cli_registry,
    cli_replay,
    cli_webhooks,
)
from api.cli_output import print_rows
from artifactlog import Client
from core.errors import ArtifactlogError, ValidationError
from core.logs import setup_logging
from core.settings import Settings
from core.stack import Stack, read_state, write_state

STATUS_ALERT_EXIT = 1  # `artifactlog status`: a projection lags past its thresholds


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["bench"]:  # the suite parses its own options, --help included
        return run_bench(words[1:])
    args = build_parser().parse_args(words)
    setup_logging(os.environ.get("ARTIFACTLOG_LOG_LEVEL") or "INFO")
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings) or 0)
    except ArtifactlogError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artifactlog", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the whole system (embedded engines by default)")
    up.add_argument("--host", help="HTTP address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="HTTP port (default 8000)")
    up.add_argument("--demo", action="store_true", help="load sample artifacts")
    up.set_defaults(handler=cmd_up)

    run = sub.add_parser("run", help="run one process role against configured servers")
    run.add_argument("role", choices=["api", "relay", "ingest", "projection", "webhooks",
                                      "capture"],
                     help="api: HTTP API only (applies migrations); relay: log -> JetStream;"
                          " ingest: the NATS ingest subject's worker; projection: one"
                          " projection's worker (--name); webhooks: the webhook dispatcher;"
                          " capture: the log to Parquet files (ARTIFACTLOG_CAPTURE_DIR)")
    run.add_argument("--name", choices=["version_history", "analytics"],
                     help="which projection, for the projection role")
    run.add_argument("--host", help="HTTP address for the api role")
    run.add_argument("--port", type=int, help="HTTP port for the api role")
    run.set_defaults(handler=cmd_run)

    ingest = sub.add_parser("ingest", help="ingest a new version from a file or stdin")
    ingest.add_argument("artifact", metavar="NAMESPACE/NAME")
    ingest.add_argument("file", nargs="?", default="-",
                        help="a file, a directory (one version per file), or - for stdin")
    ingest.add_argument("--kind")
    ingest.add_argument("--as", dest="content_as", choices=["auto", "json", "text", "bytes"],
                        default="auto", help="how to read the content (default: by content)")
    ingest.add_argument("--media-type")
    ingest.add_argument("--metadata", help="JSON object of properties")
    ingest.add_argument("--producer")
    ingest.add_argument("--idempotency-key")
    ingest.add_argument("--expected-version", type=int)
    ingest.add_argument("--force", action="store_true", help="new version even if unchanged")
    ingest.set_defaults(handler=cmd_ingest)

    cli_promotion.register(sub, lambda: client(Settings.from_env()))
    cli_registry.register(sub, lambda: client(Settings.from_env()))
    cli_webhooks.register(sub, lambda: client(Settings.from_env()))

    history = sub.add_parser("history", help="list an artifact's versions")
    history.add_argument("artifact", metavar="NAMESPACE/NAME")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=cmd_history)

    status = sub.add_parser("status", help="log head and each projection's position, lag and "
                            "state; exits 1 when any projection is in ALERT")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)

    cli_replay.register(sub, lambda: client(Settings.from_env()))
    cli_capture.register(sub)
    cli_inspect.register(sub, lambda: client(Settings.from_env()))

    sql = sub.add_parser("sql", help="run read-only ClickHouse SQL on the analytics tables")
    sql.add_argument("query", help="the SQL, or - to read it from stdin")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(handler=cmd_sql)

    token = sub.add_parser("token", help="create, revoke and list API tokens")
    token_sub = token.add_subparsers(required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("name", help="the token's name: the actor shown in events")
    create.add_argument("--scope", action="append", required=True,
                        choices=["read", "write", "promote", "admin"], help="repeatable")
    create.add_argument("--namespace", action="append", help="limit to namespaces (repeatable)")
    create.set_defaults(handler=cmd_token_create)
    revoke = token_sub.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("name")
    revoke.set_defaults(handler=cmd_token_revoke)
    token_sub.add_parser("list", help="list tokens (never their secrets)").set_defaults(
        handler=cmd_token_list)

    sub.add_parser("bench", help="the benchmark suite: artifactlog bench [SCENARIO ...] "
                   "[--quick] (from a checkout; see BENCHMARKS.md)")

    schema = sub.add_parser("schema", help="print the GraphQL schema (SDL)")
    schema.set_defaults(handler=cmd_schema)
    return parser


DEMO_PROJECTED_SECONDS = 60.0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from api.server import serve
    from api.workers import up_topology
    from core.runtime import port_is_free

    started = time.monotonic()
    settings = settings.with_overrides(host=args.host or settings.host,
                                       port=args.port or settings.port)
    if not port_is_free(settings.port, settings.host):
        raise ValidationError(f"port {settings.port} on {settings.host} is in use; "
                              "pass --port to choose another")
    url = f"http://{settings.host}:{settings.port}"

    async def ready(runtime: Any) -> None:
        from core.auth import TokenService

        if args.demo:
            from api.demo import load_demo
            await load_demo(runtime.service)
            # "ready" with demo data means the demo can be read: the projections (worker
            # processes of their own) have applied it.
            if not await runtime.services.status.wait_caught_up(DEMO_PROJECTED_SECONDS):
                print(f"the projections have not applied the demo data within "
                      f"{DEMO_PROJECTED_SECONDS:.0f}s; it shows once they catch up",
                      file=sys.stderr, flush=True)
        token = await ensure_local_admin_token(TokenService(runtime.pool), settings.home)
        write_state(settings.home, api_url=url, pid=os.getpid())
        print(f"artifactlog ready in {time.monotonic() - started:.1f}s: GraphQL at {url}/graphql"
              f" (data in {settings.home})", flush=True)
        if token:
            print(f"created the local admin token (shown once; the CLI reads it from "
                  f"{settings.home / 'state.json'}):\n  {token}", flush=True)

    with Stack(settings) as resolved:
        try:
            asyncio.run(serve(resolved, on_ready=ready, **up_topology(resolved)))
        finally:
            write_state(settings.home, api_url=None, pid=None)
    return 0


async def ensure_local_admin_token(tokens: Any, home: Path) -> str | None:
    """On first start, an admin token for the local CLI; kept in state.json (mode 0600)."""
    saved = read_state(home).get("token")
    if saved:
        try:
            await tokens.authenticate(saved)
            return None
        except ArtifactlogError:
            pass  # revoked or from an older data directory: make a new one
    taken = {info.name for info in await tokens.list()}
    name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 10_000))) if n not in taken)
    token, _ = await tokens.create(name, ["admin"])
    write_state(home, token=token)
    return str(token)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from api.roles import run_role
    from api.server import serve
    from core.db import migrate

    if not (settings.database_url and settings.nats_url):
        raise ValidationError("`artifactlog run` needs DATABASE_URL and NATS_URL")
    if args.role in ("relay", "ingest", "webhooks", "capture"):
        asyncio.run(run_role(settings, args.role))
        return 0
    if args.role == "projection":
        if not args.name:
            raise ValidationError("`artifactlog run projection` needs --name")
        asyncio.run(run_role(settings, f"projection:{args.name}"))
        return 0
    settings = settings.with_overrides(host=args.host or settings.host,
                                       port=args.port or settings.port)
    migrate(settings.database_url)
    asyncio.run(serve(settings, with_relay=False, with_webhooks=False, projections=(),
                      with_ingest_worker=False))
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    namespace, name = split_artifact(args.artifact)
    metadata = parse_json_option("--metadata", args.metadata) if args.metadata else None
    api = client(settings)
    for label, data in ingest_sources(args.file):
        fields = content_fields(data, args.content_as, label)
        result = api.ingest(
            namespace, name, content=fields.get("content"), text=fields.get("text"),
            data=fields.get("data"), kind=args.kind, media_type=args.media_type,
            metadata=metadata, producer=args.producer,
            idempotency_key=args.idempotency_key, expected_version=args.expected_version,
            force=args.force)
        version = result.version
        state = "created" if result.created else "unchanged, existing"
        print(f"{namespace}/{name}@{version.number} ({version.label}) {state}; "
              f"digest {version.digest[:12]} position {result.position}  <- {label}")
    return 0


def ingest_sources(path: str) -> list[tuple[str, bytes]]:
    """stdin, one file, or every file of a directory (sorted: one version per file)."""
    if path == "-":
        return [("stdin", sys.stdin.buffer.read())]
    target = Path(path)
    if target.is_dir():
        files = sorted(f for f in target.rglob("*") if f.is_file())
        if not files:
            raise ValidationError(f"{path} holds no files")
        return [(str(f), read_file(str(f))) for f in files]
    return [(path, read_file(path))]


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    namespace, name = split_artifact(args.artifact)
    versions = client(settings).history(namespace, name)
    if args.json:
        print(json.dumps([{"number": v.number, "label": v.label, "stage": str(v.stage),
                           "digest": v.digest, "size": v.size, "mediaType": v.media_type,
                           "metadata": v.metadata, "producer": v.producer,
                           "createdAt": v.created_at.isoformat(), "position": v.position}
                          for v in versions], indent=2))
        return 0
    print(f"{'#':>5}  {'label':<10} {'stage':<11} {'digest':<12} {'size':>9}  created")
    for v in versions:
        print(f"{v.number:>5}  {v.label:<10} {v.stage!s:<11} {v.digest[:12]:<12} "
              f"{v.size:>9}  {v.created_at.isoformat()}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Exits STATUS_ALERT_EXIT when any projection is in ALERT (for cron jobs and probes)."""
    status = client(settings).status()
    if args.json:
        print(json.dumps({"headPosition": status.head_position, "state": status.state,
                          "projections": [
            {"name": p.name, "position": p.position, "lag": p.lag, "lagSeconds": p.lag_seconds,
             "parked": p.parked, "state": p.state, "alertReason": p.alert_reason}
            for p in status.projections]}, indent=2))
        return STATUS_ALERT_EXIT if status.state == "ALERT" else 0
    print(f"log head: {status.head_position}  state: {status.state}")
    print(f"{'projection':<18} {'position':>10} {'lag':>8} {'lag s':>8} {'parked':>7}  state")
    for p in status.projections:
        seconds = "-" if p.lag_seconds is None else f"{p.lag_seconds:.1f}"
        why = f" ({p.alert_reason})" if p.alert_reason else ""
        print(f"{p.name:<18} {p.position:>10} {p.lag:>8} {seconds:>8} {p.parked:>7}  "
              f"{p.state}{why}")
    return STATUS_ALERT_EXIT if status.state == "ALERT" else 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    query = sys.stdin.read() if args.query == "-" else args.query
    result = client(settings).sql(query)
    print_rows(result.columns, result.rows, args.format)
    return 0


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    token, info = asyncio.run(with_tokens(settings, lambda tokens: tokens.create(
        args.name, args.scope, args.namespace)))
    limits = f" in namespaces {', '.join(sorted(info.namespaces))}" if info.namespaces else ""
    print(f"token {info.name} ({', '.join(sorted(info.scopes))}{limits}); shown once:")
    print(token)
    return 0


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(with_tokens(settings, lambda tokens: tokens.revoke(args.name)))
    print(f"token {args.name} revoked")
    return 0


def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    for info in asyncio.run(with_tokens(settings, lambda tokens: tokens.list())):
        state = f"revoked {info.revoked_at:%Y-%m-%d}" if info.revoked_at else "active"
        namespaces = ",".join(sorted(info.namespaces)) if info.namespaces else "*"
        print(f"{info.name:<20} {info.prefix:<12} {','.join(sorted(info.scopes)):<24} "
              f"{namespaces:<20} {state}")
    return 0


async def with_tokens(settings: Settings, action: Any) -> Any:
    """Token administration talks to Postgres directly: DATABASE_URL, or the embedded server
    of a running `artifactlog up`."""
    from core.auth import TokenService
    from core.db import open_pool

    pool = await open_pool(database_url_for_cli(settings), max_size=2)
    try:
        return await action(TokenService(pool))
    finally:
        await pool.close()


def database_url_for_cli(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    port = read_state(settings.home).get("postgres_port")
    if not port or not read_state(settings.home).get("api_url"):
        raise ValidationError("set DATABASE_URL, or start the embedded system with "
                              "`artifactlog up` first")
    from core.runtime import DATABASE

    return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"


def run_bench(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent  # the checkout (editable install)
    if (root / "bench" / "suite.py").exists():
        sys.path.insert(0, str(root))
    try:
        from bench.suite import main as bench_main
    except ImportError:  # bench/ lives in the repository, not in the package
        print("error: the benchmark suite runs from a checkout of the repository: "
              "python -m bench [SCENARIO ...] [--quick]", file=sys.stderr)
        return 2
    return bench_main(argv)


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from api.schema import schema

    print(schema.as_str())
    return 0


def client(settings: Settings) -> Client:
    url = os.environ.get("ARTIFACTLOG_URL") or read_state(settings.home).get("api_url")
    if not url:
        raise ValidationError("no running artifactlog found: start it with `artifactlog up` "
                              "or set ARTIFACTLOG_URL")
    token = os.environ.get("ARTIFACTLOG_TOKEN") or read_state(settings.home).get("token")
    return Client(url, token, client_name="cli")


def split_artifact(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise ValidationError(f"expected NAMESPACE/NAME, got {text!r}")
    return namespace, name


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from exc


def parse_json_option(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{option} is not valid JSON: {exc}") from exc


def content_fields(data: bytes, content_as: str, filename: str) -> dict[str, Any]:
    """JSON files become structured content, UTF-8 text stays text, anything else is bytes."""
    if content_as in ("auto", "json") and (content_as == "json" or filename.endswith(".json")):
        return {"content": parse_json_option(filename, data.decode("utf-8", "replace"))}
    if content_as in ("auto", "text"):
        try:
            return {"text": data.decode("utf-8")}
        except UnicodeDecodeError:
            if content_as == "text":
                raise ValidationError(f"{filename} is not UTF-8 text") from None
    return {"data": data}


if __name__ == "__main__":
    sys.exit(main())
