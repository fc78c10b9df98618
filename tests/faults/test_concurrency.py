"""Fault 1: many clients appending to one artifact with expectedVersion, retrying on
CONFLICT. Versions stay contiguous and every acknowledged append is stored exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from core.commands import IngestVersion
from core.errors import Conflict
from tests.faults.checker import History, analyse
from tests.faults.conftest import observe
from tests.faults.figures import scale
from tests.integration.streams import System

pytestmark = pytest.mark.anyio

CLIENTS = 16
APPENDS = scale(50, 500)


async def test_concurrent_appends_with_expected_version_stay_contiguous(
    system: System, figures: dict[str, Any],
) -> None:
    history, attempts, conflicts = History(), 0, 0
    rng = random.Random(1)

    async def client(c: int) -> None:
        nonlocal attempts, conflicts
        expected = 0
        for j in range(APPENDS):
            op = history.start("ns", "hot", key=f"c{c}-{j}")
            while True:
                attempts += 1
                try:
                    result = await system.service.ingest(IngestVersion(
                        "ns", "hot", content={"client": c, "n": j}, idempotency_key=op.key,
                        expected_version=expected))
                except Conflict as exc:
                    conflicts += 1
                    expected = int(exc.details.get("current_version", expected))
                    await asyncio.sleep(rng.random() * 0.003)
                    continue
                assert result.created
                history.finish(op, "ok", number=result.version.number)
                expected = result.version.number
                break

    started = time.monotonic()
    await asyncio.gather(*[client(c) for c in range(CLIENTS)])
    seconds = time.monotonic() - started
    await system.relay().publish_pending()
    report = analyse(history, await observe(system, read_model=False))

    numbers = sorted(op.number for op in history.ops if op.number is not None)
    state = await system.service.load("ns", "hot")
    figures.update(report.figures(), clients=CLIENTS, appends=CLIENTS * APPENDS,
                   attempts=attempts, conflicts=conflicts,
                   conflict_rate=round(conflicts / attempts, 3), seconds=round(seconds, 1))
    assert report.problems() == {}
    assert report.acknowledged == CLIENTS * APPENDS
    assert numbers == list(range(1, CLIENTS * APPENDS + 1))  # each number acked exactly once
    assert [v.number for v in state.versions] == numbers
    assert conflicts > 0, "16 clients on one artifact must have raced"
