"""A synthetic event history: many artifacts, ingests with lineage, promotions, withdrawals.
Shared by the projection tests and bench/projections.py."""

from __future__ import annotations

import random

from core.content import encode_content
from core.events import NewEvent, VersionIngested, VersionKey, VersionPromoted, VersionWithdrawn
from core.ports import AppendBatch
from tests.integration.streams import System


def history(artifacts: int, versions: int, seed: int = 1) -> list[list[NewEvent]]:
    """Per artifact: ingests with lineage to the previous artifact, promotions, withdrawals."""
    rng = random.Random(seed)
    streams = []
    for a in range(artifacts):
        name, events, production = f"a{a}", [], None
        for number in range(1, versions + 1):
            parents = (VersionKey("ns", f"a{a - 1}", 1),) if a and number == 1 else ()
            events.append(VersionIngested(
                number=number, kind="dataset", label=f"v{number}", digest=f"{a}-{number}",
                size=100 + number, media_type="application/json", content_type="json",
                metadata={"a": a, "n": number}, parents=parents))
            if rng.random() < 0.2:
                events.append(VersionPromoted(number=number, previous=production))
                production = number
            elif rng.random() < 0.1 and production != number:
                events.append(VersionWithdrawn(number=number, reason="bad"))
        streams.append([NewEvent("ns", name, i, e) for i, e in enumerate(events, start=1)])
    return streams


async def append_interleaved(system: System, streams: list[list[NewEvent]]) -> int:
    """Append round-robin across artifacts, in batches, like many producers at once."""
    order = [s[i] for i in range(max(map(len, streams))) for s in streams if i < len(s)]
    content = encode_content(content={"x": 1}, max_bytes=100)
    for start in range(0, len(order), 500):
        await system.store.append(AppendBatch(order[start:start + 500], [content]))
    return len(order)
