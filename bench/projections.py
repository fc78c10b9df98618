"""Projection throughput on a log of N events (default 100,000), on the embedded engines.

    python -m bench.projections [--events 100000]

Appends the events straight into the Postgres log (1,000 artifacts, ingests with lineage,
promotions, withdrawals), then measures, one stage at a time so each figure is its own:
the relay (log -> JetStream), each projection worker consuming from JetStream until caught up,
and each projection's rebuild from the log. Prints a table and writes JSON next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.clickhouse import ClickHouse
from core.settings import Settings
from core.stack import Stack
from projections.analytics import AnalyticsProjection
from projections.base import Projection
from projections.leases import PartitionLeases
from projections.parking import ParkingLot
from projections.rebuild import rebuild
from projections.runner import ProjectionWorker
from projections.status import projection_status
from projections.version_history import VersionHistoryProjection
from tests.integration.streams import System, open_system
from tests.integration.workload import append_interleaved, history


async def timed_until(condition: Any, *tasks_of: Any) -> float:
    stop = asyncio.Event()
    started = time.monotonic()
    tasks = [asyncio.create_task(run(stop)) for run in tasks_of]
    try:
        while not await condition():  # noqa: ASYNC110 (the condition is in the engines)
            await asyncio.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def measure(settings: Settings, artifacts: int, versions: int) -> dict[str, Any]:
    async with open_system(settings) as system:
        started = time.monotonic()
        total = await append_interleaved(system, history(artifacts, versions))
        results: dict[str, Any] = {"events": total,
                                   "append_seconds": time.monotonic() - started}

        async def published() -> bool:
            info = await system.js.stream_info(settings.stream_name)
            return bool(info.state.messages >= total)

        seconds = await timed_until(published, system.relay().run)
        results["relay_events_per_second"] = total / seconds
        clickhouse = ClickHouse(settings.effective_clickhouse_url)
        projections: list[Projection] = [VersionHistoryProjection(system.pool),
                                         AnalyticsProjection(clickhouse, settings)]
        for projection in projections:
            await projection.setup()
            results[f"{projection.name}_consume_events_per_second"] = total / await timed_until(
                lambda p=projection: caught_up(system, p), worker(system, projection).run)
            rebuilt = await rebuild(projection, system.store, settings)
            results[f"{projection.name}_rebuild_events_per_second"] = rebuilt.events_per_second
        await clickhouse.close()
        return results


async def caught_up(system: System, projection: Projection) -> bool:
    status = await projection_status(projection, system.pool, system.js, system.settings)
    return status.lag == 0


def worker(system: System, projection: Projection) -> ProjectionWorker:
    assert system.settings.database_url
    leases = PartitionLeases(system.settings.database_url, projection.name,
                             system.settings.partitions)
    return ProjectionWorker(projection, system.js, system.settings, leases,
                            ParkingLot(system.pool), rebalance_interval=0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=Path("bench/projections.json"))
    args = parser.parse_args()
    artifacts = 1000
    versions = max(1, round(args.events / artifacts / 1.25))  # ~25% are stage changes
    with tempfile.TemporaryDirectory() as home, Stack(Settings(home=Path(home))) as settings:
        results = asyncio.run(measure(settings, artifacts, versions))
    results["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(),
                          "cpus": __import__("os").cpu_count()}
    args.output.write_text(json.dumps(results, indent=2))
    print(f"{results['events']} events ({artifacts} artifacts)")
    for key, value in results.items():
        if key.endswith("per_second"):
            print(f"  {key:<42} {value:>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
