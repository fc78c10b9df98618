"""Zero-downtime rebuild: replay the log into shadow tables while the live ones keep serving,
then switch atomically; the live workers then go on from the rebuilt checkpoints.

Steps: (1) create empty shadow tables and a projection object writing to them (the
projection's own code, so a shadow is built exactly like a live table); (2) replay the whole
log into them, live workers still applying to the live tables; (3) take the projection's
maintenance lock, so workers finish their batch and pause; replay what arrived meanwhile;
(4) switch in one step, checkpoints included; (5) release the lock. Every event a worker
applied to the live tables had committed before (3), so the shadow holds it too; workers then
skip everything up to the new checkpoints and apply the rest.

Postgres (version_history): the shadow tables live in schema ``artifactlog_shadow`` under the
live names, with the live tables' constraints and indexes under the live names, plus a
``projection_checkpoints`` of their own; the projection writes there through a pool whose
``search_path`` puts that schema first. The switch is one transaction of renames (``ALTER
TABLE ... SET SCHEMA``): live tables out to ``artifactlog_retired``, shadow tables in, and
the shadow's checkpoints copied over. It takes its locks with a short ``lock_timeout`` and
retries, so it never joins a deadlock with a reader (the reader would be the one aborted).

ClickHouse (analytics): the shadow is the whole projection set up in database
``<live>_shadow``; the switch is one ``EXCHANGE TABLES a AND b, ...`` statement (atomic per
pair; nothing writes in between since the workers are paused). Only tables are exchanged,
never views: ClickHouse stores a view's query with its tables qualified by database
(``live.events``), so the live ``ingest_stats_per_minute`` view reads whatever table is named
``live.events`` and sees the rebuilt one right after the exchange; exchanging the view
would bring in the shadow's, bound to ``<live>_shadow.events``, i.e. to the retired table
that ``discard`` then drops. The analytics checkpoint is the ``events`` table itself, so it
switches with it.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from core.clickhouse import ClickHouse, quote_identifier
from core.errors import Conflict, Unavailable
from projections.base import Projection

SHADOW_SCHEMA = "artifactlog_shadow"
RETIRED_SCHEMA = "artifactlog_retired"
CHECKPOINTS = "projection_checkpoints"
SWAP_LOCK_TIMEOUT = "200ms"  # well under deadlock_timeout (1 s): we give way, never a reader
SWAP_ATTEMPTS = 150


class ShadowTarget(Protocol):
    """Where a shadow rebuild writes, and how it switches over."""

    async def prepare(self) -> Projection:
        """Empty shadow tables; the projection that writes to them."""
        ...

    async def finish(self) -> None:
        """After the bulk replay: secondary indexes and the like."""
        ...

    async def swap(self) -> None:
        """Replace the live tables (and checkpoints) with the shadow in one atomic step."""
        ...

    async def discard(self) -> None:
        """Drop whatever is left (the shadow on failure, the retired tables on success)."""
        ...


class PostgresShadow:
    def __init__(self, database_url: str, projection_name: str, tables: tuple[str, ...],
                 make: Any) -> None:
        self.url = database_url
        self.name = projection_name
        self.tables = tables
        self.make = make  # pool -> projection writing through that pool
        self.pool: AsyncConnectionPool | None = None
        self.live = "public"
        self.indexes: list[str] = []

    async def prepare(self) -> Projection:
        async with await AsyncConnection.connect(self.url, autocommit=True) as conn:
            self.live = await live_schema(conn, self.tables[0])
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(SHADOW_SCHEMA)))
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SHADOW_SCHEMA)))
            async with conn.transaction():
                for table in (*self.tables, CHECKPOINTS):
                    self.indexes += await copy_table(conn, self.live, table)
        options = f"-c search_path={SHADOW_SCHEMA},{self.live}"
        self.pool = AsyncConnectionPool(make_conninfo(self.url, options=options), min_size=1,
                                        max_size=4, open=False)
        await self.pool.open(wait=True, timeout=30)
        return self.make(self.pool)  # type: ignore[no-any-return]

    async def finish(self) -> None:
        # Built once over the loaded rows, not row by row during the replay.
        async with await AsyncConnection.connect(self.url, autocommit=True) as conn:
            for statement in self.indexes:
                await conn.execute(statement)  # type: ignore[arg-type]

    async def swap(self) -> None:
        live, shadow, retired = map(sql.Identifier, (self.live, SHADOW_SCHEMA, RETIRED_SCHEMA))
        names = sql.SQL(", ").join(sql.SQL("{}.{}").format(live, sql.Identifier(t))
                                   for t in self.tables)
        async with await AsyncConnection.connect(self.url) as conn:
            for _ in range(SWAP_ATTEMPTS):
                try:
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                        await conn.execute(sql.SQL(
                            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))
                        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                            retired))
                        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(retired))
                        for table in map(sql.Identifier, self.tables):
                            await conn.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                                live, table, retired))
                            await conn.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                                shadow, table, live))
                        await copy_checkpoints(conn, self.live, self.name)
                    return
                except psycopg.errors.LockNotAvailable:
                    await asyncio.sleep(random.uniform(0.01, 0.1))
        raise Unavailable(f"could not lock the {self.name} tables to switch them; the live "
                          "tables are unchanged")

    async def discard(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        async with await AsyncConnection.connect(self.url, autocommit=True) as conn:
            for schema in (SHADOW_SCHEMA, RETIRED_SCHEMA):
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)))


async def live_schema(conn: AsyncConnection[Any], table: str) -> str:
    cur = await conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s)", (table,))
    row = await cur.fetchone()
    if row is None:
        raise Unavailable(f"table {table} does not exist; are the migrations applied?")
    return str(row[0])


async def copy_table(conn: AsyncConnection[Any], live: str, table: str) -> list[str]:
    """Create the shadow of ``table`` with its constraints under their own names; return the
    statements that create its other indexes (also under their own names)."""
    source = sql.SQL("{}.{}").format(sql.Identifier(live), sql.Identifier(table))
    target = sql.SQL("{}.{}").format(sql.Identifier(SHADOW_SCHEMA), sql.Identifier(table))
    await conn.execute(sql.SQL(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY"
        " INCLUDING STORAGE INCLUDING COMMENTS)").format(target, source))
    cur = await conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid ="
        " to_regclass(%s) AND contype IN ('p', 'u', 'c', 'x') ORDER BY conname",
        (f"{live}.{table}",))
    for name, definition in await cur.fetchall():
        await conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
            target, sql.Identifier(name)) + sql.SQL(definition))
    cur = await conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid ="
        " to_regclass(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
        " WHERE c.conindid = i.indexrelid) ORDER BY 1", (f"{live}.{table}",))
    statements = []
    for (definition,) in await cur.fetchall():
        on_live = f" ON {quote(live)}.{quote(table)} "
        assert on_live in definition, definition
        statements.append(definition.replace(
            on_live, f" ON {quote(SHADOW_SCHEMA)}.{quote(table)} ", 1))
    return statements


def quote(name: str) -> str:
    """How pg_get_indexdef spells an identifier: bare when it can be."""
    return name if name.isidentifier() and name == name.lower() else f'"{name}"'


async def copy_checkpoints(conn: AsyncConnection[Any], live: str, projection: str) -> None:
    live_table = sql.SQL("{}.{}").format(sql.Identifier(live), sql.Identifier(CHECKPOINTS))
    shadow_table = sql.SQL("{}.{}").format(sql.Identifier(SHADOW_SCHEMA),
                                           sql.Identifier(CHECKPOINTS))
    await conn.execute(sql.SQL("DELETE FROM {} WHERE projection = %s").format(live_table),
                       (projection,))
    await conn.execute(sql.SQL(
        "INSERT INTO {} (projection, partition, position, updated_at) SELECT projection,"
        " partition, position, now() FROM {} WHERE projection = %s").format(
            live_table, shadow_table), (projection,))


class ClickHouseShadow:
    def __init__(self, live: ClickHouse, tables: tuple[str, ...], make: Any) -> None:
        self.live = live
        self.tables = tables
        self.make = make  # ClickHouse adapter -> projection writing through it
        self.projection: Any = None
        self.live_db = ""
        self.shadow_db = ""

    async def prepare(self) -> Projection:
        if self.live.database:
            self.live_db = self.live.database
        else:
            _, _, rows = await self.live.query("SELECT currentDatabase()")
            self.live_db = str(rows[0][0])
        self.shadow_db = f"{self.live_db}_shadow"
        await self._drop_shadow()
        self.projection = self.make(ClickHouse(self.live.dsn, self.shadow_db))
        await self.projection.setup()
        return self.projection  # type: ignore[no-any-return]

    async def finish(self) -> None:
        """Nothing to do: ClickHouse tables carry their sorting keys from the start."""

    async def swap(self) -> None:
        live, shadow = quote_identifier(self.live_db), quote_identifier(self.shadow_db)
        pairs = ", ".join(f"{live}.{quote_identifier(t)} AND {shadow}.{quote_identifier(t)}"
                          for t in self.tables)
        await self.live.command(f"EXCHANGE TABLES {pairs}")

    async def discard(self) -> None:
        if self.projection is not None:
            await self.projection.close()
            self.projection = None
        await self._drop_shadow()

    async def _drop_shadow(self) -> None:
        await self.live.command(f"DROP DATABASE IF EXISTS {quote_identifier(self.shadow_db)}"
                                " SYNC")


async def shadow_rebuild(target: ShadowTarget, replay: Any, leases: Any,
                         database_url: str) -> tuple[int, float]:
    """Steps (1)-(5) of the module docstring; ``replay(projection, after)`` applies the log
    after a position up to the head at the call and returns (events applied, that head).
    Returns (events, seconds)."""
    started = time.monotonic()
    async with await AsyncConnection.connect(database_url, autocommit=True) as lock:
        cur = await lock.execute("SELECT pg_try_advisory_lock(%s, 1)", (leases.maintenance_key,))
        if not (row := await cur.fetchone()) or not row[0]:
            raise Conflict("a shadow rebuild of this projection is already running")
        try:
            shadow = await target.prepare()
            applied, position = await replay(shadow, 0)
            await target.finish()
            await lock.execute("SELECT pg_advisory_lock(%s, 0)", (leases.maintenance_key,))
            try:
                more, _ = await replay(shadow, position)
                await target.swap()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s, 0)",
                                   (leases.maintenance_key,))
        finally:
            await target.discard()
            await lock.execute("SELECT pg_advisory_unlock(%s, 1)", (leases.maintenance_key,))
    return applied + more, time.monotonic() - started
