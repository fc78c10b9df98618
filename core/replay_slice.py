"""A slice of the event log (positions, times, a namespace or one artifact), read from
Postgres in pages in position order.

Reading ``position > last`` in pages never skips an event: appends make positions visible in
order (core/eventlog_pg.py), so a page boundary is never overtaken by a late commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.errors import ValidationError
from core.eventlog_pg import EVENT_COLUMNS, recorded_event
from core.events import RecordedEvent

PAGE_SIZE = 1000


@dataclass(frozen=True)
class HistorySlice:
    """Which events: every bound is optional and inclusive; all given bounds apply."""

    from_position: int | None = None
    to_position: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    namespace: str | None = None
    name: str | None = None  # with namespace: one artifact

    def __post_init__(self) -> None:
        for label, moment in (("since", self.since), ("until", self.until)):
            if moment is not None and moment.tzinfo is None:
                raise ValidationError(f"{label} needs a time zone (e.g. 2026-11-26T10:00Z)")
        if self.name is not None and self.namespace is None:
            raise ValidationError("an artifact needs its namespace")
        if (self.from_position is not None and self.to_position is not None
                and self.from_position > self.to_position):
            raise ValidationError("from-position is after to-position")

    def where(self, after: int) -> tuple[sql.Composable, list[Any]]:
        """The WHERE clause selecting this slice's events above ``after``."""
        clauses, params = [sql.SQL("position > %s")], [after]
        bounds = (("position >= %s", self.from_position), ("position <= %s", self.to_position),
                  ("recorded_at >= %s", self.since), ("recorded_at <= %s", self.until),
                  ("namespace = %s", self.namespace), ("name = %s", self.name))
        for clause, value in bounds:
            if value is not None:
                clauses.append(sql.SQL(clause))
                params.append(value)
        return sql.SQL(" AND ").join(clauses), params


async def read_slice(pool: AsyncConnectionPool, chosen: HistorySlice, *,
                     page_size: int = PAGE_SIZE, after: int = 0
                     ) -> AsyncIterator[list[RecordedEvent]]:
    """The slice's events after ``after``, one page at a time, in position order."""
    while True:
        where, params = chosen.where(after)
        query = sql.SQL("SELECT {} FROM events WHERE {} ORDER BY position LIMIT %s").format(
            EVENT_COLUMNS, where)
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, [*params, page_size])
            page = [recorded_event(row) for row in await cur.fetchall()]
        if not page:
            return
        yield page
        after = page[-1].position
