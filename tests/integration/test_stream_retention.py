"""JetStream retention of the events stream comes from the settings (max age, max bytes), and
the duplicate window shrinks to fit a shorter max age (JetStream refuses it otherwise)."""

from __future__ import annotations

import uuid

import pytest

from core.jetstream import connect, ensure_stream
from core.settings import Settings

pytestmark = pytest.mark.anyio


async def test_retention_settings_reach_the_stream_and_can_be_lifted(settings: Settings) -> None:
    suffix = uuid.uuid4().hex[:10]
    bounded = settings.with_overrides(stream_name=f"R_{suffix}", subject_prefix=f"r{suffix}.e",
                                      stream_max_age_seconds=600.0, stream_max_bytes=10**7)
    assert bounded.nats_url
    nc = await connect(bounded.nats_url, name="test-retention")
    try:
        js = nc.jetstream()
        await ensure_stream(js, bounded)
        config = (await js.stream_info(bounded.stream_name)).config
        assert (config.max_age, config.max_bytes) == (600.0, 10**7)
        assert config.duplicate_window == 600.0  # was 7200 s, longer than the max age
        await ensure_stream(js, bounded.with_overrides(stream_max_age_seconds=0.0,
                                                       stream_max_bytes=-1))
        config = (await js.stream_info(bounded.stream_name)).config
        assert (config.max_age, config.max_bytes) == (0.0, -1)
        assert config.duplicate_window == settings.duplicate_window_seconds
        await js.delete_stream(bounded.stream_name)
    finally:
        await nc.close()
