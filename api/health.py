"""Liveness and readiness.

``/healthz``: the process is up and serving HTTP (nothing else is checked: a probe that
restarts the API over a database outage would only add restarts to the outage).
``/readyz``: this process can do its work: Postgres answers and its migrations are at the
head revision, this process's NATS connection answers a JetStream request, and ClickHouse
answers when this process serves analytics. Each check is bounded by
``probe_timeout_seconds``; a failure answers 503 naming the dependency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import lru_cache

from alembic.script import ScriptDirectory
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse

from core.analytics_sql import ReadOnlySql
from core.db import MIGRATIONS_DIR
from core.logs import redact
from core.settings import Settings

OK = "ok"


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


class Readiness:
    def __init__(self, pool: AsyncConnectionPool, js: JetStreamContext,
                 analytics: ReadOnlySql | None, settings: Settings) -> None:
        self.pool = pool
        self.js = js
        self.analytics = analytics
        self.timeout = settings.probe_timeout_seconds

    async def checks(self) -> dict[str, str]:
        """Each dependency's state: "ok" or what is wrong with it."""
        probes: dict[str, Callable[[], Awaitable[str]]] = {
            "postgres": self._postgres, "migrations": self._migrations, "nats": self._nats}
        if self.analytics is not None:
            probes["clickhouse"] = self._clickhouse
        answers = await asyncio.gather(*(self._bounded(p) for p in probes.values()))
        return dict(zip(probes, answers, strict=True))

    async def _bounded(self, probe: Callable[[], Awaitable[str]]) -> str:
        try:
            return await asyncio.wait_for(probe(), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"
        except Exception as exc:  # whatever it is, it is the dependency's state to report
            return redact(f"{type(exc).__name__}: {exc}".strip())[:300]

    async def _postgres(self) -> str:
        async with self.pool.connection(timeout=self.timeout) as conn:
            await conn.execute("SELECT 1")
        return OK

    async def _migrations(self) -> str:
        async with self.pool.connection(timeout=self.timeout) as conn:
            cur = await conn.execute("SELECT version_num FROM alembic_version")
            rows = [r[0] for r in await cur.fetchall()]
        head = head_revision()
        if rows != [head]:
            return f"the database is at revision {', '.join(rows) or 'none'}, the code at {head}"
        return OK

    async def _nats(self) -> str:
        await self.js.account_info()
        return OK

    async def _clickhouse(self) -> str:
        assert self.analytics is not None
        await self.analytics.clickhouse.query("SELECT 1")
        return OK


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(readiness: Readiness) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def readyz(request: Request) -> JSONResponse:
        checks = await readiness.checks()
        failed = sorted(name for name, state in checks.items() if state != OK)
        if failed:
            return JSONResponse({"status": "unavailable", "failed": failed, "checks": checks},
                                status_code=503)
        return JSONResponse({"status": "ready", "checks": checks})
    return readyz
