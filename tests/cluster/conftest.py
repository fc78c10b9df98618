"""Fixtures of the topology tests: a fresh system per test and the role processes it starts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.settings import Settings
from tests.faults.conftest import processes  # noqa: F401  (the fixture, shared)
from tests.integration.streams import System, open_system


@pytest.fixture
async def system(fresh_settings: Settings) -> AsyncIterator[System]:
    async with open_system(fresh_settings) as system:
        yield system


