"""7. Diff of two large keyed CSV versions: wall time and peak RSS.

Two versions of a five-column CSV (``text/csv``, key ``id``; the second changes 1% of the
rows, removes 0.1% and adds as many) are stored in the suite's Postgres, then each run diffs
them in a fresh process (``python -m bench.scenarios.diff``: ``core.comparison.DiffService``,
what GraphQL ``diff`` calls, including reading both contents from Postgres), so the peak RSS
is the diff's own: that process' high-water RSS, imports included.

1,000,000 rows (the issue's size) are about 37 MiB per version, over the default 16 MiB
content limit; the suite stores them through its own in-process service with the limit
raised to fit (``ARTIFACTLOG_MAX_CONTENT_BYTES`` would do the same for a server).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import psutil

from bench.common import MB, at_most
from bench.harness import Bench
from bench.server import ROOT
from core.commands import IngestVersion, VersionRef
from core.comparison import DiffService
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.services import ArtifactService

NAME = "diff"
TITLE = "7. Diff of two large record versions"
COUNTRIES = ("DE", "FR", "US", "JP", "BR", "IN", "NG", "AU")
HEADER = "id,customer,amount,country,tier\n"


def row(i: int, changed: bool = False) -> str:
    amount = 100_000 + (i * 7919) % 800_000 + (99_999 if changed else 0)
    return (f"{10_000_000 + i},customer-{i % 1_000_000:06d},{amount / 100:.2f},"
            f"{COUNTRIES[i % len(COUNTRIES)]},{'ABCDE'[i % 5]}\n")


def versions(rows: int) -> tuple[str, str]:
    """Before and after: 1% changed, 0.1% removed and as many added (same row count)."""
    before = HEADER + "".join(row(i) for i in range(rows))
    kept = [row(i, changed=i % 100 == 1) for i in range(rows) if i % 1000 != 7]
    after = HEADER + "".join(kept) + "".join(row(rows + i) for i in range(rows - len(kept)))
    return before, after


async def diff_in_fresh_process(database_url: str, namespace: str, name: str
                                ) -> dict[str, float]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scenarios.diff", database_url, namespace, name,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await child.communicate()
    if child.returncode:
        raise RuntimeError(f"the diff process exited with {child.returncode}")
    return dict(json.loads(out))


async def diff(database_url: str, namespace: str, name: str) -> dict[str, float]:
    pool = await open_pool(database_url, max_size=2)
    try:
        diffs = DiffService(ArtifactService(PostgresEventStore(pool),
                                            max_content_bytes=1 << 40))
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        comparison = await diffs.diff(VersionRef(namespace, name, 1),
                                      VersionRef(namespace, name, 2), key=["id"])
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    return {"seconds": seconds, "changes": comparison.total, "rss_before": before,
            "peak_rss": peak_rss()}


def peak_rss() -> int:
    """This process' high-water RSS. Not ru_maxrss: Linux carries that over fork and exec,
    so a child would report its parent's peak (ours holds chDB: 300+ MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


async def store(bench: Bench, rows: int) -> tuple[str, int]:
    """The two versions, stored once; returns the artifact name and one version's size."""
    before, after = versions(rows)
    size = max(len(before.encode()), len(after.encode()))
    async with bench.local(max_content_bytes=max(size, bench.engines.max_content_bytes)
                           ) as local:
        for text in (before, after):
            await local.service.ingest(IngestVersion(
                "diff", f"csv-{rows}", kind="dataset", text=text, media_type="text/csv",
                metadata={"key": "id"}, force=True))
    return f"csv-{rows}", size


async def run(bench: Bench) -> None:
    rows = bench.size(NAME, "rows", quick=20_000, full=1_000_000)
    name, size = await store(bench, rows)
    url = bench.engines.database_url
    assert url
    results: list[dict[str, float]] = []

    async def once(warmup: bool) -> None:
        result = await diff_in_fresh_process(url, "diff", name)
        if not warmup:
            results.append(result)

    await bench.repeat(once)
    changes = int(results[0]["changes"])
    bench.add(NAME, f"diff wall time ({changes:,} changes)", "s",
              [r["seconds"] for r in results], goal=at_most(20))
    bench.add(NAME, "peak RSS of the diffing process", "MB",
              [r["peak_rss"] / MB for r in results], goal=at_most(500),
              note=f"{rows:,} CSV rows ({size / MB:.0f} MiB) per version; the process held "
                   f"{results[0]['rss_before'] / MB:.0f} MB before the diff started")


if __name__ == "__main__":  # the child: one diff, its figures as JSON on stdout
    print(json.dumps(asyncio.run(diff(*sys.argv[1:4]))))
