"""Analytics SQL abuse through /sql and GraphQL `analytics`: writes, DDL, settings, host files,
URLs, UDFs, named collections and row bombs are refused or bounded, nothing reaches the host,
and the process (chDB runs inside it) keeps answering."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.eventlog_pg import PostgresEventStore
from core.settings import Settings
from tests.abuse.conftest import app_client, error_code

pytestmark = pytest.mark.anyio

ESCAPE = Path("/tmp/artifactlog-sql-abuse.txt")
REFUSED = ("VALIDATION", "LIMIT", "TIMEOUT")
STATEMENTS: list[str] = [
    "DROP TABLE events",
    "TRUNCATE TABLE events",
    "ALTER TABLE events DELETE WHERE 1",
    "CREATE TABLE t (x UInt8) ENGINE = Memory",
    "INSERT INTO events (position) VALUES (1)",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT count() FROM numbers(10) SETTINGS max_execution_time = 100000",
    "SELECT 1 SETTINGS max_rows_to_read = 0",
    f"INSERT INTO FUNCTION file('{ESCAPE}', 'CSV', 'x String') VALUES ('pwned')",
    f"SELECT 'pwned' INTO OUTFILE '{ESCAPE}'",
    "SELECT file('/etc/passwd')",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1:1', system.one)",
    "SELECT * FROM executable('id', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:1/x', 'CSV')",
    "CREATE FUNCTION pwn AS (x) -> x + 1",
    "CREATE NAMED COLLECTION pwn AS url = 'http://127.0.0.1:1/'",
    "SYSTEM SHUTDOWN",
    "KILL QUERY WHERE 1",
    "SELECT count() FROM numbers(1e12)",
    "SELECT count() FROM numbers_mt(1000000000000)",
    "SELECT sum(a.number * b.number) FROM numbers(100000) a CROSS JOIN numbers(100000) b",
    "SELECT groupArray(number) FROM numbers(100000000)",
    "SELECT number FROM numbers(100000000)",
    "SELECT repeat('x', 1000000000)",
    "SELECT 1; DROP TABLE events",
    "SELECT * FROM generateRandom('x String') LIMIT 10",
    "SELECT * FROM system.users",
    "SHOW GRANTS",
    "SELECT 1 FORMAT Native",
    "",
    "   ",
    "SELECT " + "1 + " * 60_000 + "1",
]


@pytest.fixture
async def http(store: PostgresEventStore, settings: Settings,
               chdb_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(store, settings, chdb_path=chdb_path, sql_seconds=1) as http:
        yield http


async def test_abusive_sql_is_refused_or_bounded_and_the_process_survives(
    http: httpx.AsyncClient, figures: dict[str, Any],
) -> None:
    passwd = prepare()
    answers: dict[str, str] = {}
    slowest = 0.0
    for statement in STATEMENTS:
        for via in ("sql", "graphql"):
            started = time.monotonic()
            if via == "sql":
                response = await http.post("/sql", content=statement.encode())
            else:
                response = await http.post("/graphql", json={
                    "query": "query($s: String!) { analytics(sql: $s) { rows } }",
                    "variables": {"s": statement}})
            slowest = max(slowest, time.monotonic() - started)
            code = error_code(response)
            answers[f"{via}: {statement[:60]}"] = f"{response.status_code} {code}"
            # 504 TIMEOUT is the bounded answer of a query stopped at max_execution_time
            assert response.status_code < 500 or (response.status_code, code) == (
                504, "TIMEOUT"), (statement, response.text[:300])
            assert code in REFUSED, (via, statement, response.text[:300])
            assert passwd not in response.text
    alive = await http.post("/sql", content=b"SELECT count() AS n FROM events")
    figures.update(statements=len(STATEMENTS) * 2, server_errors=0,
                   slowest_seconds=round(slowest, 2), alive_after=alive.status_code,
                   codes=sorted({a.split()[1] for a in answers.values()}))
    assert alive.status_code == 200
    assert alive.json()["rows"] == [[0]]
    assert not escaped()


def prepare() -> str:
    """No file where an escape would write one; the first line of /etc/passwd to look for."""
    ESCAPE.unlink(missing_ok=True)
    return Path("/etc/passwd").read_text().splitlines()[0]


def escaped() -> bool:
    return ESCAPE.exists()
