"""The loopback cluster's parts for tests: role processes each with a home (and chDB directory)
of its own, the bulk ingest clients, and the lock tables that say who owns what."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx

from core.relay import active_relay
from core.runtime import free_port
from core.settings import Settings
from projections.leases import lock_key
from tests.faults.checker import History, status_of_code
from tests.faults.conftest import Processes
from tests.integration.streams import System, wait_until


def own_home(settings: Settings, root: Path, tag: str) -> Settings:
    """Each process its own home and chDB directory (chDB: one process per directory)."""
    home = root / tag
    home.mkdir(parents=True, exist_ok=True)
    return settings.with_overrides(home=home, clickhouse_url=f"chdb://{home / 'clickhouse'}")


async def start_api(processes: Processes, settings: Settings, root: Path, tag: str
                    ) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = processes.start(own_home(settings, root, tag), "api", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{url}/healthz", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False
    await wait_until(healthy, within=60, interval=0.2)
    return proc, url


async def bulk_ingest(url: str, token: str, history: History, lines: list[dict[str, Any]],
                      attempts: int = 20) -> None:
    """One NDJSON request, resent (idempotency keys) until every line is answered."""
    ops = [history.start(line["namespace"], line["name"], key=line["idempotencyKey"])
           for line in lines]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(attempts):
            try:
                response = await client.post(f"{url}/ingest/bulk", content=body, headers=headers)
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 200:
                for op, result in zip(ops, response.json()["results"], strict=True):
                    if "error" in result:
                        op.finish(status_of_code(result["error"]["code"]),
                                  error=result["error"]["code"])
                    else:
                        op.finish("ok", number=result["number"])
                return
            await asyncio.sleep(0.5)
    for op in ops:
        op.finish("unknown", error="no answer")


async def held_locks(system: System, key: int) -> list[int]:
    """The advisory locks held on ``key`` in this database: the two-key form's second keys."""
    async with system.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s::bigint::oid AND objsubid = 2 AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())", (key,))
        return [int(row[0]) for row in await cur.fetchall()]


async def worker_locks(system: System, projection: str) -> tuple[int, int]:
    """(live worker slots, owned partitions) of a projection."""
    slots = await held_locks(system, lock_key(f"artifactlog:slots:{projection}"))
    owned = await held_locks(system, lock_key(f"artifactlog:partitions:{projection}"))
    return len(slots), len(set(owned))


async def active_relay_name(system: System) -> str | None:
    return await active_relay(system.pool, system.settings.stream_name)

