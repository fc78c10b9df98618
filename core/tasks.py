"""Running awaitables side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def gather_or_cancel(*awaitables: Awaitable[Any]) -> list[Any]:
    """Every result, in order, awaited concurrently. The first failure cancels the others,
    waits until they have stopped, and is raised as itself: ``asyncio.gather`` would leave
    them running (their own failures never retrieved), and a ``TaskGroup`` wraps the error
    in an ExceptionGroup, which callers that handle domain errors would not catch."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
