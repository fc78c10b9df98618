"""The embedded nats-server runs under Go's soft memory limit (core/runtime.py): the limit is in
the real process's environment, and a GOMEMLIMIT the user sets wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.runtime import NATS_MEMORY_LIMIT, nats_environment
from tests.conftest import Engines


def test_the_embedded_nats_server_process_runs_with_the_memory_limit(engines: Engines) -> None:
    assert engines.nats.proc is not None
    environ = Path(f"/proc/{engines.nats.proc.pid}/environ").read_bytes().split(b"\0")
    assert f"GOMEMLIMIT={nats_environment()['GOMEMLIMIT']}".encode() in environ


def test_a_gomemlimit_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    assert nats_environment()["GOMEMLIMIT"] == NATS_MEMORY_LIMIT == "192MiB"
    monkeypatch.setenv("GOMEMLIMIT", "1GiB")
    assert nats_environment()["GOMEMLIMIT"] == "1GiB"
