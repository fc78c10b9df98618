"""Fault 6, clustered: a three-node JetStream cluster on loopback (three nats-server processes,
stream replicas 3). `kill -9` the node leading the events stream while the relay publishes and
the version-history worker consumes: nothing acknowledged is lost or doubled, publishing goes
on with two nodes, and the read model converges to a rebuild once the node is back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from core.runtime import EmbeddedNatsCluster
from core.settings import Settings
from projections.version_history import VersionHistoryProjection
from tests.faults.checker import History, analyse, converge
from tests.faults.conftest import history_checksum, observe, produce, worker
from tests.faults.figures import scale
from tests.integration.streams import (
    System,
    open_system,
    running,
    stream_info_or_none,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DOWN_SECONDS = scale(2, 20)


async def test_nats_cluster_node_sigkilled_under_load(
    fresh_settings: Settings, tmp_path: Path, figures: dict[str, Any],
) -> None:
    cluster = EmbeddedNatsCluster(tmp_path / "nats")
    cluster.start()
    history = History()
    settings = fresh_settings.with_overrides(nats_url=cluster.url, stream_replicas=3,
                                             relay_batch_size=50)
    try:
        async with open_system(settings) as system, running(
                system.relay(batch_size=50, poll_interval=0.05).run, worker(system).run):
            info = await system.js.stream_info(settings.stream_name)
            assert info.config.num_replicas == 3
            assert info.cluster is not None
            stop = asyncio.Event()
            producer = asyncio.create_task(produce(system, history, scale(5_000, 100_000),
                                                   pause=0.002, stop=stop))
            await wait_until(partial(system.published_at_least, 200), within=30,
                             interval=0.02)
            leader = info.cluster.leader
            victim = next(n for n in cluster.nodes if f"artifactlog_{n.port}" == leader)
            before = await system.published()
            victim.kill()
            killed = time.monotonic()
            await wait_until(partial(system.published_at_least, before + 1), within=30,
                             interval=0.01)
            publish_stall = time.monotonic() - killed
            await asyncio.sleep(DOWN_SECONDS)  # ingest goes on with two nodes of three
            published_while_down = await system.published() - before
            new_leader = (await system.js.stream_info(settings.stream_name)).cluster
            victim.start()
            cluster.wait_ready()
            fault_ended = time.monotonic()
            stop.set()
            await producer
            log_head = len(await system.log_ids())
            await wait_until(partial(system.published_at_least, log_head), within=60)
            convergence = await converge(
                [(VersionHistoryProjection(system.pool), history_checksum(system))],
                system.pool, system.settings, fault_ended=fault_ended)
            replicas = await _replica_states(system)  # read the stream once it has settled
            report = analyse(history, await observe(system))
    finally:
        cluster.stop()
    figures.update(report.figures(), nodes=3, replicas=3, killed="stream leader",
                   publish_stall_seconds=round(publish_stall, 3),
                   published_while_down=published_while_down,
                   convergence_seconds=convergence.seconds,
                   equal_to_rebuild=convergence.equal_to_rebuild,
                   followers_current_after_return=replicas["current"])
    assert report.problems() == {}
    assert report.acknowledged == report.log_events > 0
    assert new_leader is not None
    assert new_leader.leader != leader
    assert published_while_down > 0
    assert convergence.equal_to_rebuild, (convergence.live, convergence.rebuilt)
    assert replicas["offline"] == 0  # the killed node is back in the stream's peer group


async def _replica_states(system: System) -> dict[str, int]:
    """The stream leader's followers once the killed node is back in the peer group: how many
    are offline, and how many have already caught up (under load one may still be catching up)."""
    found: list[Any] | None = None

    async def followers_answered(none_offline: bool) -> bool:
        nonlocal found
        info = await stream_info_or_none(system.js, system.settings.stream_name)
        if info is None or info.cluster is None:
            return False
        found = list(info.cluster.replicas or [])
        return not none_offline or not [r for r in found if r.offline]
    with contextlib.suppress(AssertionError):
        await wait_until(partial(followers_answered, True), within=15)
    if found is None:
        await wait_until(partial(followers_answered, False), within=30)
    assert found is not None
    return {"current": len([r for r in found if r.current]),
            "offline": len([r for r in found if r.offline])}
