"""Read the analytics tables that another process wrote into its own chDB directory.

chDB hosts one engine per process on one data directory, and the test process already has its
own open, so a projection worker *process* must own a directory of its own and the test cannot
open it. Once that worker has exited, this module runs as a process of its own on the same
directory (``python -m tests.faults.chdb_probe`` with the settings' environment) and prints, as
one JSON object, what the history checker needs: ClickHouse's raw ``events`` ids (no FINAL),
``count() - uniqExact(event_id)``, whether every partition's checkpoint reached the log head,
and the checksums of every table before and after a fresh rebuild from the log.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from core.clickhouse import ClickHouse
from core.db import open_pool
from core.eventlog_pg import PostgresEventStore
from core.settings import Settings
from projections.analytics import AnalyticsProjection
from projections.rebuild import rebuild
from tests.faults.checker import (
    at_head,
    clickhouse_checksum,
    clickhouse_duplicates,
    read_clickhouse_ids,
)


async def probe(settings: Settings) -> dict[str, Any]:
    assert settings.database_url
    pool = await open_pool(settings.database_url, max_size=2)
    clickhouse = ClickHouse(settings.effective_clickhouse_url)
    try:
        projection = AnalyticsProjection(clickhouse, settings)
        await projection.setup()
        checksum = clickhouse_checksum(clickhouse)
        found = {"clickhouse_ids": await read_clickhouse_ids(clickhouse),
                 "count_minus_uniq": await clickhouse_duplicates(clickhouse),
                 "at_head": await at_head(projection, pool, settings),
                 "live": await checksum()}
        await rebuild(projection, PostgresEventStore(pool), settings)
        return {**found, "rebuilt": await checksum()}
    finally:
        await clickhouse.close()
        await pool.close()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(probe(Settings.from_env()))) + "\n")
