"""Fault 3: out-of-order commits at volume. Many transactions append and then commit after
random delays, in random order, while the relay and the version-history worker run: neither
skips an event, and the read model converges to a rebuild."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from core.content import encode_content
from core.events import NewEvent, VersionIngested
from core.ports import AppendBatch
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import History, analyse, converge
from tests.faults.conftest import history_checksum, observe, worker
from tests.faults.figures import scale
from tests.integration.streams import System, running

pytestmark = pytest.mark.anyio

CHAINS = 30  # artifacts, each appended by its own client, concurrently
APPENDS = scale(300, 1000)


async def test_late_commits_in_random_order_are_all_relayed_and_projected(
    system: System, figures: dict[str, Any],
) -> None:
    history, rng = History(), random.Random(3)

    async def chain(c: int) -> None:
        for number in range(1, APPENDS // CHAINS + 1):
            op = history.start("ns", f"slow{c}")
            content = encode_content(content={"c": c, "n": number}, max_bytes=1024)
            event = NewEvent("ns", f"slow{c}", number, VersionIngested(
                number=number, kind="dataset", label=f"v{number}", digest=content.digest,
                size=content.size, media_type=None, content_type="json"))
            async with system.pool.connection() as conn, conn.transaction():
                await asyncio.sleep(rng.random() * 0.02)  # work before the append
                await system.store.write(conn, AppendBatch([event], [content]))
                await asyncio.sleep(rng.random() * 0.01)  # and a slow commit after it
            op.finish("ok", number=number)

    started = time.monotonic()
    async with running(system.relay(poll_interval=0.05).run, worker(system).run):
        await asyncio.gather(*[chain(c) for c in range(CHAINS)])
        load_seconds = time.monotonic() - started
        convergence = await converge(
            [(VersionHistoryProjection(system.pool), history_checksum(system))],
            system.pool, system.settings, fault_ended=time.monotonic())
    report = analyse(history, await observe(system))
    figures.update(report.figures(), appends=APPENDS, load_seconds=round(load_seconds, 1),
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild)
    assert report.problems() == {}
    assert report.acknowledged == report.log_events == APPENDS
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)
