"""Fault 2: idempotency-key retries. Concurrent duplicates, a retry after the API process was
SIGKILLed mid-request, and a republish after JetStream's duplicate window has passed: one
event per key every time."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from core.commands import IngestVersion
from core.events import RecordedEvent
from core.runtime import free_port
from core.settings import Settings
from core.stack import read_state
from tests.e2e.test_up import Up, wait_gone
from tests.faults.checker import History, Observed, analyse, status_of_code
from tests.faults.conftest import observe
from tests.faults.figures import scale
from tests.integration.streams import open_system, wait_until

pytestmark = pytest.mark.anyio

INGEST = """mutation($input: IngestInput!) { ingest(input: $input) { created
  version { number } } }"""


async def test_concurrent_duplicates_make_one_event_per_key(
    fresh_settings: Settings, figures: dict[str, Any],
) -> None:
    keys, copies = scale(10, 100), 8
    async with open_system(fresh_settings) as system:
        history = History()

        async def send(k: int) -> tuple[int, bool]:
            op = history.start("ns", f"a{k % 3}", key=f"key-{k}")
            result = await system.service.ingest(IngestVersion(
                "ns", f"a{k % 3}", content={"k": k}, idempotency_key=op.key))
            history.finish(op, "ok", number=result.version.number)
            return result.version.number, result.created

        results = await asyncio.gather(*[send(k) for k in range(keys) for _ in range(copies)])
        await system.relay().publish_pending()
        report = analyse(history, await observe(system, read_model=False))
    by_key: dict[int, list[tuple[int, bool]]] = {}
    for i, result in enumerate(results):
        by_key.setdefault(i // copies, []).append(result)
    figures.update(report.figures(), keys=keys, requests=keys * copies)
    assert report.problems() == {}
    for answers in by_key.values():
        assert len({number for number, _ in answers}) == 1  # every copy got the same version
        assert sum(created for _, created in answers) == 1  # and exactly one created it
    assert report.log_events == keys


@pytest.mark.slow
async def test_retry_after_the_api_process_is_killed_mid_request(
    home: Path, figures: dict[str, Any],
) -> None:
    port, history = free_port(), History()
    up = Up(home, port)
    token = read_state(home)["token"]
    headers = {"Authorization": f"Bearer {token}"}
    acked_before_kill = 0

    async def writer(client: httpx.AsyncClient, w: int, stop: asyncio.Event) -> None:
        nonlocal acked_before_kill
        i = 0
        while not stop.is_set():
            await send(client, history.start("ns", f"w{w}", key=f"w{w}-{i}"), i)
            i += 1
            acked_before_kill = history.count("ok")

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers,
                                 timeout=10) as client:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(writer(client, w, stop)) for w in range(8)]
        await wait_until(lambda: _acked(history, 40), within=30, interval=0.01)
        up.proc.send_signal(signal.SIGKILL)  # mid-request: eight writers are in flight
        killed_at = time.monotonic()
        stop.set()
        await asyncio.gather(*tasks)
    up.proc.wait()
    up.stop()  # closes its pipes
    assert wait_gone(home) == []
    # Another port: the old one is held by the killed server's sockets for a while (see
    # test_up_restarts_on_the_same_port_after_a_crash).
    port = free_port()
    up = Up(home, port)
    restart_seconds = time.monotonic() - killed_at
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers,
                                     timeout=10) as client:
            before_retry = analyse(history, Observed(log=await _log(home)))
            retried = [op for op in history.ops if op.status != "ok"]
            for op in retried:  # the client's retry: the same request with the same key
                await send(client, op, int(str(op.key).split("-")[1]))
            acknowledged = [op for op in history.ops if op.status == "ok"][:20]
            again = [history.start(op.namespace, op.name, key=op.key) for op in acknowledged]
            for op in again:
                await send(client, op, int(str(op.key).split("-")[1]))
            after = analyse(history, Observed(log=await _log(home)))
    finally:
        assert up.stop() == 0
    figures.update(requests=len(history.ops), acknowledged_before_kill=acked_before_kill,
                   unknown_at_kill=before_retry.unknown, unknown_resolved=dict(
                       before_retry.unknown_resolved), retried=len(retried) + len(again),
                   lost=after.lost_acknowledged, duplicates=after.duplicate_events,
                   restart_seconds=round(restart_seconds, 1))
    assert before_retry.unknown >= 1, "the kill must catch requests in flight"
    assert before_retry.unknown_resolved["2+"] == 0
    assert before_retry.lost_acknowledged == 0
    assert after.problems() == {}
    assert [op.error for op in history.ops if op.status != "ok"] == []


@pytest.mark.slow
def test_up_restarts_on_the_same_port_after_a_crash(home: Path) -> None:
    port = free_port()
    up = ClosingUp(home, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200  # a kept-alive connection
        up.proc.send_signal(signal.SIGKILL)
        up.stop()
        assert wait_gone(home) == []
    again = ClosingUp(home, port)
    assert again.stop() == 0


class ClosingUp(Up):
    """``Up`` that closes its pipes when the server fails to start."""

    def __init__(self, home: Path, port: int) -> None:
        try:
            super().__init__(home, port)
        except AssertionError:
            self.proc.wait(30)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()
            raise


async def send(client: httpx.AsyncClient, op: Any, i: int) -> None:
    variables = {"input": {"namespace": op.namespace, "name": op.name, "content": {"i": i},
                           "idempotencyKey": op.key}}
    try:
        response = await client.post("/graphql", json={"query": INGEST, "variables": variables})
    except httpx.HTTPError as exc:
        op.finish("unknown", error=repr(exc))
        return
    body = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {}
    if response.status_code == 200 and not body.get("errors"):
        op.finish("ok", number=body["data"]["ingest"]["version"]["number"])
        return
    code = (body.get("errors") or [{}])[0].get("extensions", {}).get("code") or body.get(
        "error", {}).get("code")
    op.finish(status_of_code(code), error=f"{response.status_code} {code}")


async def _acked(history: History, count: int) -> bool:
    return history.count("ok") >= count


async def _log(home: Path) -> list[Any]:
    port = read_state(home)["postgres_port"]
    async with await psycopg.AsyncConnection.connect(
            f"postgresql://postgres@127.0.0.1:{port}/artifactlog") as conn:
        cur = await conn.execute("SELECT position, event_id, namespace, name, stream_version,"
                                 " type, payload, metadata, recorded_at FROM events")
        rows = await cur.fetchall()
    return [RecordedEvent(*row) for row in rows]


async def test_republish_after_the_duplicate_window_makes_no_second_message(
    fresh_settings: Settings, figures: dict[str, Any],
) -> None:
    settings = fresh_settings.with_overrides(duplicate_window_seconds=0.5)
    history = History()
    async with open_system(settings) as system:
        for i in range(20):
            op = history.start("ns", f"a{i % 4}", key=f"k{i}")
            result = await system.service.ingest(IngestVersion(
                "ns", f"a{i % 4}", content={"i": i}, idempotency_key=op.key))
            history.finish(op, "ok", number=result.version.number)
        first = system.relay()
        await first.resume()
        assert await first.publish_pending() == 20
        await asyncio.sleep(1.0)  # the duplicate window has passed
        async with system.pool.connection() as conn:  # the relay died before its checkpoint
            await conn.execute("UPDATE relay_checkpoints SET position = 0")
        second = system.relay()
        await second.resume()
        republished = await second.publish_pending()
        for op in list(history.ops):  # clients retry with their keys, too
            retry = await system.service.ingest(IngestVersion(
                op.namespace, op.name, content={"i": int(str(op.key)[1:])},
                idempotency_key=op.key))
            assert (retry.created, retry.version.number) == (False, op.number)
        report = analyse(history, await observe(system, read_model=False))
        # Control: bypassing the relay's resume, the same event published again after the
        # window is accepted as a new message, and the checker counts it.
        [event] = await system.store.read_after(0, 1)
        second.publisher.last_event_id = (await second.publisher.tail()).event_id  # type: ignore[union-attr]
        await second.publisher.publish([event])
        control = analyse(history, await observe(system, read_model=False))
    figures.update(report.figures(), republished_by_resumed_relay=republished,
                   control_stream_duplicates=control.stream_duplicates)
    assert republished == 0
    assert report.problems() == {}
    assert control.stream_duplicates == 1, "the window had not passed: the control is void"
