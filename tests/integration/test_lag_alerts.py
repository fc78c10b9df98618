"""Lag alerts against the real engines: a projection that falls behind its threshold is in
ALERT in GraphQL status, in `artifactlog status` (non-zero exit) and in one log line; when it
catches up, one recovery line, and the status is OK again."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator

import pytest
import uvicorn

from api.app import create_app
from core.auth import TokenService
from core.commands import IngestVersion
from core.errors import ValidationError
from core.runtime import free_port
from core.settings import Settings
from projections.lag_watch import LagWatch
from projections.status import LagThresholds, StatusQueries, lag_thresholds, thresholds_for
from tests.integration.observed import STATUS, observed_app, version_history_worker
from tests.integration.streams import System, open_system, running, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    # Three events behind is an alert for version_history; the defaults stay far away.
    settings = fresh_settings.with_overrides(lag_alert_overrides="version_history.events=2",
                                             probe_timeout_seconds=1.0)
    async with open_system(settings) as system:
        yield system


def test_thresholds_default_and_override_per_projection() -> None:
    settings = Settings(lag_alert_events=100, lag_alert_seconds=60,
                        lag_alert_overrides="analytics.events=5000, version_history.seconds=7.5")
    assert thresholds_for("analytics", settings) == LagThresholds(5000, 60)
    assert thresholds_for("version_history", settings) == LagThresholds(100, 7.5)
    assert thresholds_for("webhooks", settings) == LagThresholds(100, 60)
    for bad in ("analytics=5", "analytics.events", "analytics.minutes=3", ".events=1",
                "analytics.events=-1", "analytics.events=many"):
        with pytest.raises(ValidationError, match="LAG_ALERT_OVERRIDES"):
            lag_thresholds(Settings(lag_alert_overrides=bad))


async def cli_status(url: str, token: str) -> tuple[int, str]:
    """`artifactlog status` as a cron job runs it: its exit code and what it printed."""
    env = {**os.environ, "ARTIFACTLOG_URL": url, "ARTIFACTLOG_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", "status", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_alert_raised_and_cleared_everywhere(
        system: System, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="artifactlog.lag")
    for i in range(3):
        await system.service.ingest(IngestVersion("ns", f"a{i}", text=f"v{i}"))
    relay = system.relay()
    await relay.resume()
    await relay.publish_pending()
    async with observed_app(system) as app:
        watch = LagWatch(app.services.status, interval=0.1)
        other_replica = LagWatch(app.services.status, interval=0.1)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            create_app(app.services, system.settings, TokenService(system.pool)),
            host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: _started(server), within=10, interval=0.05)
            url = f"http://127.0.0.1:{port}"

            status = (await app.graphql(STATUS)).json()["data"]["status"]
            assert status["state"] == "ALERT"
            (projection,) = status["projections"]
            assert (projection["state"], projection["lag"]) == ("ALERT", 3)
            assert projection["alertReason"] == "lag 3 events > 2"
            assert projection["lagAlertEvents"] == 2
            code, printed = await cli_status(url, app.token)
            assert code == 1, printed
            assert "ALERT (lag 3 events > 2)" in printed

            assert await watch.lead()
            assert not await other_replica.lead()  # one replica announces transitions
            await watch.check()
            await watch.check()  # still in ALERT: nothing new to say
            raised = [r for r in caplog.records if r.name == "artifactlog.lag"]
            assert [(r.levelname, r.projection, r.lag_state) for r in raised] == [
                ("WARNING", "version_history", "ALERT")]
            # the watching replica goes away: the other takes over and announces what it finds
            await watch.close()
            assert await other_replica.lead()
            await other_replica.check()
            await other_replica.check()

            async with running(version_history_worker(system).run):
                await wait_until(lambda: _lag_is(app.services.status, 0), within=30)
            await other_replica.check()
            await other_replica.check()
            lines = [(r.levelname, r.lag_state) for r in caplog.records
                     if r.name == "artifactlog.lag"]
            assert lines == [("WARNING", "ALERT"), ("WARNING", "ALERT"), ("INFO", "OK")]
            assert "lag alert cleared" in caplog.records[-1].getMessage()

            status = (await app.graphql(STATUS)).json()["data"]["status"]
            assert (status["state"], status["projections"][0]["alertReason"]) == ("OK", None)
            code, printed = await cli_status(url, app.token)
            assert code == 0, printed
        finally:
            server.should_exit = True
            await serving
            await watch.close()
            await other_replica.close()


async def _started(server: uvicorn.Server) -> bool:
    return bool(server.started)


async def _lag_is(status: StatusQueries, lag: int) -> bool:
    return all(p.lag == lag for p in await status.projections_status())
