"""ClickHouse SQL over a capture directory, without opening file() to the user.

The API's read-only SQL refuses file() (core/analytics_sql.py): there a query would read any
host file the server can. Here the capture directory is exposed as two tables, ``events`` and
``contents``, each a table over ``file('<dir>/events/**/*.parquet', Parquet)`` created by us
(``CREATE TABLE ... AS file(...)``); the user's query then goes through the same read-only
guard and limits as the API's (``ReadOnlySql``), which refuses file(), url() and the rest, so
it can read these two tables and nothing else of the host. ``date`` and ``namespace`` come
from the Hive-style paths.

Run it on a ClickHouse engine of its own (the CLI starts a throwaway chDB): the tables are
recreated for every query, so they see the files as they are now.
"""

from __future__ import annotations

from pathlib import Path

from core.analytics_sql import ReadOnlySql, SqlResult
from core.capture_manifest import DATA_DIRS
from core.clickhouse import ClickHouse
from core.errors import NotFound, ValidationError

EXAMPLE_QUERY = """\
SELECT date, namespace, type, count() AS events, max(position) AS last_position
FROM events
GROUP BY date, namespace, type
ORDER BY date, namespace, type"""
GLOB_CHARACTERS = set("*?{}[]'\\")


class CaptureQuery:
    def __init__(self, clickhouse: ClickHouse, directory: Path) -> None:
        self.clickhouse = clickhouse
        self.directory = directory.resolve()
        if GLOB_CHARACTERS & set(str(self.directory)):
            raise ValidationError(f"the capture directory {self.directory} has a character"
                                  " ClickHouse would read as a glob or quote; move it")
        self.sql = ReadOnlySql(clickhouse)
        # A file's row count is cached per path; a capture still being written grows files.
        self.sql.limits["use_cache_for_count_from_files"] = 0

    async def run(self, query: str) -> SqlResult:
        """Expose the captured files as tables, then run ``query`` read-only and bounded."""
        found = False
        for table in DATA_DIRS:
            files = self.directory / table
            await self.clickhouse.command(f"DROP TABLE IF EXISTS {table}")
            if any(files.rglob("*.parquet")):
                await self.clickhouse.command(
                    f"CREATE TABLE {table} AS file('{files}/**/*.parquet', Parquet)")
                found = True
        if not found:
            raise NotFound(f"nothing is captured in {self.directory} yet (run `artifactlog "
                           "capture` first)")
        return await self.sql.run(query)
