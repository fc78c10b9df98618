"""Fixtures of the topology tests: a fresh system per test and the role processes it starts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from core.settings import Settings
from tests.faults.conftest import Processes
from tests.integration.streams import System, open_system


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        for proc in started.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
