"""What the figures were measured on: the machine and the exact engine versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import chdb
import psutil
import psycopg

from core.clickhouse import ClickHouse
from core.jetstream import connect
from core.settings import Settings


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_version() -> str:
    """The commit measured, ``-dirty`` with uncommitted changes (outside bench/)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench",
                                  ":!BENCHMARKS.md"], cwd=root, text=True,
                                 capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("-dirty" if changes else "")


def machine() -> dict[str, Any]:
    return {"code": code_version(),
        "cpus": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024 ** 3, 1),
        "python": sys.version.split()[0], "platform": platform.platform(),
    }


async def engine_versions(settings: Settings) -> dict[str, str]:
    """PostgreSQL's server_version, nats-server's version from its INFO, chDB's versions."""
    assert settings.database_url
    assert settings.nats_url
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        row = await (await conn.execute("SHOW server_version")).fetchone()
    nc = await connect(settings.nats_url, name="bench-info")
    try:
        nats_version = str(nc._server_info.get("version", "?"))  # INFO as the server sent it
    finally:
        await nc.close()
    clickhouse = ClickHouse(settings.effective_clickhouse_url)
    try:
        _, _, rows = await clickhouse.query("SELECT version()")
    finally:
        await clickhouse.close()
    return {"postgresql": str(row[0]) if row else "?", "nats-server": nats_version,
            "chdb": f"{chdb.__version__} (ClickHouse engine {rows[0][0]})"}
