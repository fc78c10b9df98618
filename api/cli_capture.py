"""`artifactlog capture`: the event log (and version content) as Parquet files, partitioned
by date and namespace, resumable after any crash (core/capture.py); and `artifactlog capture
query "SQL"`: ClickHouse SQL over those files (core/capture_sql.py).

Capturing reads the Postgres log directly (DATABASE_URL, or the embedded server of a running
`artifactlog up`). `--until-head` captures up to the head at start and exits; without it the
capture keeps running (as `artifactlog run capture` does).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from api.cli_output import print_rows
from core.settings import Settings


def register(sub: Any) -> None:
    capture = sub.add_parser("capture", help="write the event log to Parquet files "
                             "(date/namespace partitions), resumably; `capture query SQL`",
                             description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    capture.add_argument("--dir", type=Path, help="capture directory (default "
                         "ARTIFACTLOG_CAPTURE_DIR, else ARTIFACTLOG_HOME/capture)")
    capture.add_argument("--content", action="store_true", default=None,
                         help="also capture version content (fixed at a directory's first run)")
    capture.add_argument("--until-head", action="store_true",
                         help="capture up to the current head, then exit")
    capture.add_argument("--batch-size", type=int, default=10_000,
                         help="events per committed batch (default 10000)")
    capture.set_defaults(handler=cmd_capture)
    actions = capture.add_subparsers(dest="action", metavar="ACTION")
    query = actions.add_parser("query", help="run read-only ClickHouse SQL over the captured "
                               "files: tables events and contents")
    query.add_argument("sql", help="the SQL, or - to read it from stdin")
    query.add_argument("--dir", dest="query_dir", type=Path, help="capture directory")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.set_defaults(handler=cmd_query)


def capture_dir(settings: Settings, given: Path | None) -> Path:
    return (given or settings.capture_dir or settings.home / "capture").expanduser()


def cmd_capture(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(capture(args, settings))


async def capture(args: argparse.Namespace, settings: Settings) -> int:
    from api.cli_replay import direct
    from core.capture import Capture
    from core.content_store import content_store_for
    from core.eventlog_pg import PostgresEventStore

    directory = capture_dir(settings, args.dir)
    content = settings.capture_content if args.content is None else args.content
    async with direct(settings) as (pool, _):
        store = PostgresEventStore(pool, content_store_for(settings, pool))
        worker = Capture(pool, store, directory, content=content, batch_size=args.batch_size)
        if not args.until_head:
            stop = asyncio.Event()
            from api.roles import stop_on_signals

            stop_on_signals(stop)
            await worker.run(stop, settings.capture_interval_seconds)
            return 0
        result = await worker.run_once()
    removed = f"; removed {len(result.removed)} uncommitted file(s)" if result.removed else ""
    print(f"captured {result.events} events into {result.files} files in {directory}; "
          f"position {result.position}{removed}")
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    text = sys.stdin.read() if args.sql == "-" else args.sql
    result = asyncio.run(query(capture_dir(settings, args.query_dir or args.dir), text))
    print_rows(result.columns, result.rows, args.format)
    return 0


async def query(directory: Path, text: str) -> Any:
    from core.capture_sql import CaptureQuery
    from core.clickhouse import ClickHouse

    # A throwaway engine: chDB opens one data directory per process, and this one holds
    # nothing but the two tables over the captured files.
    with tempfile.TemporaryDirectory(prefix="artifactlog-capture-sql-") as engine:
        clickhouse = ClickHouse(f"chdb://{engine}", database="capture")
        try:
            return await CaptureQuery(clickhouse, directory).run(text)
        finally:
            await clickhouse.close()
