"""7. Diff of two large keyed record versions: wall time and peak RSS.

The issue asks for 1,000,000 CSV rows, but one version's content is limited to 16 MiB
(ARTIFACTLOG_MAX_CONTENT_BYTES), so the full run uses the most rows of five columns that
still fit (192,841; issue 5 brings a streaming diff for larger ones). The second
version changes 1% of the rows, removes 0.1% and adds as many. Each run diffs in a fresh
process (``python -m bench.scenarios.diff``: ``core.comparison.DiffService``, what GraphQL
``diff`` calls), so its peak RSS is the diff's own: that process' high-water RSS, imports included.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import MB, at_most
from bench.harness import Bench
from bench.server import ROOT
from core.commands import IngestVersion, VersionRef
from core.comparison import DiffService
from core.content import canonical_json
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.services import ArtifactService

NAME = "diff"
TITLE = "7. Diff of two large record versions"
COUNTRIES = ("DE", "FR", "US", "JP", "BR", "IN", "NG", "AU")
FIRST_ID = 10_000_000  # ids of one width, so every row has the same encoded length


def record(i: int, changed: bool = False) -> dict[str, Any]:
    amount = 100_000 + (i * 7919) % 800_000 + (99_999 if changed else 0)
    return {"id": FIRST_ID + i, "customer": f"customer-{i % 1_000_000:06d}", "amount": amount,
            "country": COUNTRIES[i % len(COUNTRIES)], "tier": "ABCDE"[i % 5]}


def versions(rows: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Before and after: 1% changed, 0.1% removed and as many added (same row count)."""
    before = [record(i) for i in range(rows)]
    after = [record(i, changed=i % 100 == 1) for i in range(rows) if i % 1000 != 7]
    after += [record(rows + i) for i in range(rows - len(after))]
    return before, after


def rows_that_fit(max_bytes: int) -> int:
    """Every row encodes to the same length: ``[`` + rows joined by ``,`` + ``]``."""
    row = len(canonical_json(record(0)))
    return (max_bytes - 2 + 1) // (row + 1)


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
    return {"seconds": seconds, "changes": len(comparison.changes), "rss_before": before,
            "peak_rss": peak_rss()}


def peak_rss() -> int:
    """This process' high-water RSS. Not ru_maxrss: Linux carries that over fork and exec,
    so a child would report its parent's peak (ours holds chDB: 300+ MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


async def run(bench: Bench) -> None:
    limit = bench.engines.max_content_bytes
    rows = bench.size(NAME, "rows", quick=20_000, full=rows_that_fit(limit))
    before, after = versions(rows)
    async with bench.local() as local:
        for content in (before, after):
            await local.service.ingest(IngestVersion(
                "diff", f"records-{rows}", kind="dataset", content=content,
                metadata={"key": "id"}, force=True))
    del before, after
    url = bench.engines.database_url
    assert url
    results: list[dict[str, float]] = []

    async def once(warmup: bool) -> None:
        result = await diff_in_fresh_process(url, "diff", f"records-{rows}")
        if not warmup:
            results.append(result)

    await bench.repeat(once)
    changes = int(results[0]["changes"])
    bench.add(NAME, f"diff wall time ({changes:,} changes)", "s",
              [r["seconds"] for r in results], goal=at_most(20))
    bench.add(NAME, "peak RSS of the diffing process", "MB",
              [r["peak_rss"] / MB for r in results], goal=at_most(500),
              note=f"{rows:,} rows per version; the process held "
                   f"{results[0]['rss_before'] / MB:.0f} MB before the diff started")


if __name__ == "__main__":  # the child: one diff, its figures as JSON on stdout
    print(json.dumps(asyncio.run(diff(*sys.argv[1:4]))))
