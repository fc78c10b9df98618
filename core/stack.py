"""Brings up whichever engines the settings do not point at, and remembers where they run.

``home/state.json`` records the ports chosen on first start (reused later, so a second `up`
finds the same data at the same address) and, while a server runs, its URL for the CLI.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.db import migrate
from core.runtime import EmbeddedNats, EmbeddedPostgres, free_port, port_is_free
from core.settings import Settings

log = logging.getLogger("artifactlog.stack")


def state_path(home: Path) -> Path:
    return home / "state.json"


def read_state(home: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(state_path(home).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def write_state(home: Path, **changes: Any) -> None:
    state = read_state(home) | changes
    path = state_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)  # it may hold the local admin token
    tmp.replace(path)


def _port(state: dict[str, Any], key: str) -> int:
    port = state.get(key)
    return int(port) if isinstance(port, int) and port_is_free(port) else free_port()


@dataclass
class Stack:
    """The engines in use: embedded children where no URL was configured."""

    settings: Settings
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None

    def start(self) -> Settings:
        """Start what is missing, apply migrations, and return settings with every URL set."""
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        state = read_state(home)
        database_url, nats_url = self.settings.database_url, self.settings.nats_url
        try:
            if not database_url:
                self.postgres = EmbeddedPostgres(home / "postgres" / "data",
                                                 _port(state, "postgres_port"))
                database_url = self.postgres.start()
                write_state(home, postgres_port=self.postgres.port)
            if not nats_url:
                self.nats = EmbeddedNats(home / "nats", _port(state, "nats_port"))
                nats_url = self.nats.start()
                write_state(home, nats_port=self.nats.port)
            migrate(database_url)
        except BaseException:
            self.stop()
            raise
        return self.settings.with_overrides(
            database_url=database_url, nats_url=nats_url,
            clickhouse_url=self.settings.effective_clickhouse_url)

    def stop(self) -> None:
        """Stop the embedded engines, NATS first (it depends on nothing of ours)."""
        for child in (self.nats, self.postgres):
            if child is not None:
                with contextlib.suppress(Exception):
                    child.stop()

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
