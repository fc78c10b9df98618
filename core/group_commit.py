"""Group commit for single ingests: concurrent requests share one decision pass and one
append transaction, each keeping its own result or error (issue 7).

A request joins the pending queue; if no group is being written, a drain task starts and
writes everything pending as one non-atomic batch (core/batch.py: each command decided as if
it came after the ones before it, a refusal affecting only its own command), then the
requests that arrived meanwhile as the next group, until none are left. At one client that is
a group of one and costs a task switch; under load the transaction, the append lock turn and
the state reads are shared by the whole group.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence

from core.batch import BULK_GROUP_SIZE, IngestOutcome
from core.commands import IngestVersion
from core.logs import current_correlation_id

Run = Callable[[Sequence[IngestVersion], Sequence[str | None]], Awaitable[list[IngestOutcome]]]


class GroupCommit:
    def __init__(self, run: Run, max_group: int = BULK_GROUP_SIZE) -> None:
        self._run = run
        self.max_group = max_group
        self._pending: list[tuple[IngestVersion, str, asyncio.Future[IngestOutcome]]] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, cmd: IngestVersion) -> IngestOutcome:
        """The command's outcome, once the group it joined is committed."""
        future: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()
        # Each request keeps its own correlation id, though its events share a transaction.
        self._pending.append((cmd, current_correlation_id() or str(uuid.uuid4()), future))
        if self._drain_task is None:
            # A task of its own: a caller that gives up must not cancel the others' write.
            self._drain_task = asyncio.create_task(self._drain(), name="ingest-group-commit")
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                group = self._pending[:self.max_group]
                del self._pending[:self.max_group]
                try:
                    outcomes = await self._run([c for c, _, _ in group], [i for _, i, _ in group])
                except Exception as exc:  # an outage: every request of the group hears of it
                    for _, _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), outcome in zip(group, outcomes, strict=True):
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_result(outcome)
        finally:
            self._drain_task = None
