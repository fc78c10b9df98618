"""Read-only SQL over the analytics tables, for people.

With chDB the engine runs inside our process, so a query can reach whatever our process can.
What chDB 26.9 does with ``readonly=1`` (sent as a query-level SETTINGS clause), as measured:

- blocks: every write and DDL (INSERT, CREATE/DROP/ALTER/TRUNCATE, CREATE FUNCTION, CREATE
  NAMED COLLECTION, SYSTEM, SET); changing any setting from inside the query (``SETTINGS
  readonly=0`` or ``SETTINGS max_execution_time=100000`` fail with "Cannot modify ... in
  readonly mode"); the table functions file(), url(), remote(), mysql(), executable(),
  dictionary(), loop() and zeros().
- does NOT block: the scalar function ``file('/etc/passwd')``, which returns the host file;
  ``SELECT ... INTO OUTFILE '/path'``, which writes the file; a multi-statement string, all
  of whose statements run (``SELECT 1; SELECT 2`` returns both; ``CREATE ...; SELECT 1``
  creates the table when the settings lack readonly); the table functions numbers(),
  values(), generateRandom(), null() and merge().
- clickhouse-connect's chDB client applies the settings of command() and of INSERT
  statements with SET + restore on the connection: with readonly=1 among them the restore
  fails and the connection stays read-only for good. Here settings only ever travel with a
  read query, as its SETTINGS clause; still, give this service its own ClickHouse adapter.
- limits hold: ``SELECT count() FROM numbers(1e12)`` fails at once on max_rows_to_read (the
  row estimate is checked before reading), a cross join on max_execution_time, a large
  groupArray on max_memory_usage, a big result on max_result_rows.

So ``readonly=1`` and the limits are the engine's enforcement, and before anything runs the
statement goes through ClickHouse's own parser, the text always passed as a bound parameter:
formatQuery() refuses syntax errors and multi-statements and yields the canonical text that
is then inspected and executed (what was checked is what runs); parseQueryToJSON() gives the
AST (EXPLAIN AST on the canonical text where that function is missing, i.e. servers before
26.x, or cannot serialize the statement, e.g. DESCRIBE). Allowed: one SELECT (WITH, UNION,
subqueries), SHOW, DESCRIBE, EXISTS, EXPLAIN of a SELECT; no SETTINGS, FORMAT or INTO OUTFILE;
no file(); table functions only from ``TABLE_FUNCTIONS``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from core.clickhouse import ClickHouse
from core.errors import LimitExceeded, Timeout, Unavailable, ValidationError

EXAMPLE_QUERIES: dict[str, str] = {
    "ingest rate by kind per minute": """\
SELECT minute, kind, sum(ingests) AS ingests, sum(bytes) AS bytes
FROM ingest_stats_per_minute
GROUP BY minute, kind
ORDER BY minute, kind""",
    "artifacts with the most drafts never promoted": """\
SELECT v.namespace, v.name, count() AS never_promoted,
       countIf(v.stage = 'WITHDRAWN') AS withdrawn
FROM versions AS v FINAL
LEFT ANTI JOIN (SELECT DISTINCT namespace, name, number FROM promotions FINAL) AS p
    ON v.namespace = p.namespace AND v.name = p.name AND v.number = p.number
GROUP BY v.namespace, v.name
ORDER BY never_promoted DESC, v.namespace, v.name
LIMIT 20""",
    "time from ingest to production per artifact": """\
WITH ingests AS (
    SELECT namespace, name, number, recorded_at AS ingested_at
    FROM events WHERE type = 'VersionIngested'
), first_promotions AS (
    SELECT namespace, name, number, min(at) AS promoted_at
    FROM promotions FINAL GROUP BY namespace, name, number
)
SELECT namespace, name, count() AS promoted_versions,
       min(seconds) AS fastest_seconds, max(seconds) AS slowest_seconds,
       avg(seconds) AS avg_seconds
FROM (
    SELECT namespace, name, number, dateDiff('second', ingested_at, promoted_at) AS seconds
    FROM first_promotions INNER JOIN ingests USING (namespace, name, number)
)
GROUP BY namespace, name
ORDER BY avg_seconds DESC, namespace, name""",
}

# Pure generators, bounded by max_rows_to_read, useful for calendars and gap filling.
# Everything else is refused: reads of files, URLs, other servers and databases (file, url,
# s3, remote, mysql, ...), commands (executable), unbounded or odd sources (generateRandom,
# loop, merge, input), whose safety would otherwise rest on readonly alone.
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "generate_series", "generateSeries",
                             "values"})
# Scalar functions that touch the host. file() is the one in chDB 26.9 that readonly=1 lets
# through (dictGet needs a dictionary, which only DDL can create).
HOST_FUNCTIONS = frozenset({"file"})
# Statement node types, as parseQueryToJSON and EXPLAIN AST name them.
READ_STATEMENTS = frozenset({
    "SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ExplainQuery",
    "Explain", "ShowTablesQuery", "ShowTables", "ShowColumnsQuery", "ShowColumns",
    "DescribeQuery", "ExistsTableQuery", "ShowCreateTableQuery"})
NOT_STATEMENTS = frozenset({"TablesInSelectQuery", "SetQuery"})
ONLY_READS = ("only read queries are allowed (SELECT, WITH ... SELECT, SHOW, DESCRIBE, EXISTS,"
              " EXPLAIN)")
NO_OUTFILE = "INTO OUTFILE is not allowed"

# ClickHouse error codes (see ErrorCodes.cpp).
TIMEOUT_CODES = {159, 209, 394}  # TIMEOUT_EXCEEDED, SOCKET_TIMEOUT, QUERY_WAS_CANCELLED
LIMIT_CODES = {131, 158, 160, 241, 307, 396}  # string size, rows, too slow, memory, bytes, result
READONLY_CODES = {164, 497}  # READONLY, ACCESS_DENIED
UNKNOWN_FUNCTION, BAD_ARGUMENTS, SYNTAX_ERROR = 46, 36, 62

_CLAUSE = re.compile(r"^(INTO OUTFILE|FORMAT|SETTINGS)\b", re.MULTILINE)
_OUTFILE = re.compile(r"^INTO OUTFILE\b", re.MULTILINE)
_EXPLAIN_LINE = re.compile(r"^( *)(\w+)(?: (\S+))?")
_CH_PREFIX = re.compile(r"^(Code: \d+\. DB::Exception: )+")


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


@dataclass
class Ast:
    """What the guard needs to know of a parsed statement."""

    root: str = ""
    outfile: bool = False
    types: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    table_functions: set[str] = field(default_factory=set)


class ReadOnlySql:
    """Runs one read query at a time under fixed limits; refusals are ``core.errors``."""

    def __init__(self, clickhouse: ClickHouse, max_rows: int = 10_000, max_seconds: float = 10,
                 *, max_rows_to_read: int = 100_000_000, max_bytes_to_read: int = 10 * 2**30,
                 max_memory_bytes: int = 2**30, max_sql_chars: int = 100_000) -> None:
        self.clickhouse = clickhouse
        self.max_seconds = max_seconds
        self.max_sql_chars = max_sql_chars
        self.use_json_ast = True  # off once the engine turns out to lack parseQueryToJSON
        self.limits: dict[str, Any] = {
            "readonly": 1, "max_execution_time": max_seconds, "timeout_overflow_mode": "throw",
            "max_result_rows": max_rows, "max_result_bytes": 256 * 2**20,
            "result_overflow_mode": "throw", "max_rows_to_read": max_rows_to_read,
            "max_bytes_to_read": max_bytes_to_read, "read_overflow_mode": "throw",
            "max_memory_usage": max_memory_bytes}

    async def run(self, sql: str) -> SqlResult:
        """Check ``sql`` with the ClickHouse parser, then run it read-only and bounded."""
        if len(sql) > self.max_sql_chars:
            raise LimitExceeded(f"the query is longer than {self.max_sql_chars} characters")
        if not sql.strip():
            raise ValidationError("the query is empty")
        try:
            canonical = await self._canonical(sql)
            check(canonical, await self._parse(canonical))
            columns, types, rows = await asyncio.wait_for(
                self.clickhouse.query(canonical, settings=self.limits), self.max_seconds + 5)
        except TimeoutError as exc:
            raise Timeout(f"the query ran longer than {self.max_seconds} s") from exc
        except ClickHouseError as exc:
            raise translate(exc) from exc
        return SqlResult(columns, types, [[jsonable(v) for v in row] for row in rows])

    async def _canonical(self, sql: str) -> str:
        _, _, rows = await self.clickhouse.query(
            "SELECT formatQuery({sql:String})", {"sql": sql}, self.limits)
        return str(rows[0][0])

    async def _parse(self, canonical: str) -> Ast:
        if _OUTFILE.search(canonical):
            # chDB writes INTO OUTFILE even under readonly=1: keep such a statement away from
            # the engine altogether (EXPLAIN AST below would be the engine seeing it).
            raise ValidationError(NO_OUTFILE)
        if self.use_json_ast:
            try:
                _, _, rows = await self.clickhouse.query(
                    "SELECT parseQueryToJSON({sql:String})", {"sql": canonical}, self.limits)
                return from_json(json.loads(rows[0][0]))
            except DatabaseError as exc:
                if exc.code == UNKNOWN_FUNCTION:  # a server before 26.x: EXPLAIN AST from now on
                    self.use_json_ast = False
                elif exc.code != BAD_ARGUMENTS:  # BAD_ARGUMENTS: cannot serialize this statement
                    raise
        try:
            # No SETTINGS: here they would be parsed into the statement under inspection.
            lines = await self.clickhouse.query_lines(f"EXPLAIN AST {canonical}")
        except DatabaseError as exc:
            if exc.code != SYNTAX_ERROR:
                raise
            # formatQuery parsed the statement, so only the FORMAT clause that comes with
            # every query fails here: a statement that takes none (SET, SYSTEM, DDL) is no read.
            raise ValidationError(ONLY_READS) from exc
        return from_explain(lines)


def check(canonical: str, ast: Ast) -> None:
    """Refuse anything but one plain read statement; raise ValidationError saying why."""
    if ast.outfile:
        raise ValidationError(NO_OUTFILE)
    statements = {t for t in ast.types if t.endswith("Query")} - NOT_STATEMENTS
    if ast.root not in READ_STATEMENTS or not statements <= READ_STATEMENTS:
        raise ValidationError(ONLY_READS, statement=ast.root)
    allowed = {name.lower() for name in TABLE_FUNCTIONS}
    for name in sorted(ast.table_functions):
        if name.lower() not in allowed:
            raise ValidationError(f"table function {name}() is not allowed; allowed are: "
                                  + ", ".join(sorted(TABLE_FUNCTIONS)))
    for name in sorted(ast.functions):
        if name.lower() in HOST_FUNCTIONS:
            raise ValidationError(f"function {name}() is not allowed: it reads host files")
    clause = _CLAUSE.search(canonical)
    if "Set" in ast.types or "SetQuery" in ast.types or (clause and clause[1] == "SETTINGS"):
        raise ValidationError("SETTINGS are not allowed: the service sets the limits")
    if clause:
        raise ValidationError(f"{clause[1]} is not allowed: results come back as rows")


def from_json(tree: Mapping[str, Any]) -> Ast:
    """The facts of a parseQueryToJSON tree: a table function is a ``table_function``."""
    ast = Ast(root=str(tree.get("type", "")))
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str):
                ast.types.add(kind)
            if kind == "Function":
                ast.functions.add(str(node.get("name", "")))
            if "out_file" in node or node.get("is_into_outfile_with_stdout"):
                ast.outfile = True
            function = node.get("table_function")
            if isinstance(function, dict):
                ast.table_functions.add(str(function.get("name", "")))
            stack.extend(node.values())
    return ast


def from_explain(lines: list[str]) -> Ast:
    """The facts of an EXPLAIN AST dump (one node a line, indented one space a level): a
    table function is a Function right under a TableExpression (or an INSERT)."""
    ast = Ast()
    parents: list[str] = []
    for line in lines:
        match = _EXPLAIN_LINE.match(line)
        if match is None:
            continue
        depth, kind, name = len(match[1]), match[2], match[3]
        parents = parents[:depth]
        ast.root = ast.root or kind
        ast.types.add(kind)
        if kind == "Function" and name:
            ast.functions.add(name)
            if parents and parents[-1] in ("TableExpression", "InsertQuery"):
                ast.table_functions.add(name)
        parents.append(kind)
    return ast


def translate(exc: ClickHouseError) -> Exception:
    """A ClickHouse failure as the error a user of the SQL service gets."""
    if isinstance(exc, OperationalError):
        return Unavailable(f"ClickHouse is unavailable: {exc}")
    code = getattr(exc, "code", None)
    message = _CH_PREFIX.sub("", str(exc).strip())
    if "Multi-statements are not allowed" in message:
        return ValidationError("only one statement at a time is allowed")
    if code in TIMEOUT_CODES:
        return Timeout(f"the query ran too long: {message}", clickhouse_code=code)
    if code in LIMIT_CODES:
        return LimitExceeded(f"the query went over a limit: {message}", clickhouse_code=code)
    if code in READONLY_CODES:
        return ValidationError(f"only read queries are allowed: {message}",
                               clickhouse_code=code)
    if code is None:  # not the engine's refusal: the client's (closed, broken stream...)
        return Unavailable(f"ClickHouse client error: {message}")
    return ValidationError(message, clickhouse_code=code)


def jsonable(value: Any) -> Any:
    """A value as JSON can carry it: ISO datetimes, UUIDs and IPs as text, Decimals as
    floats, bytes as UTF-8 text, non-finite floats as null."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)
