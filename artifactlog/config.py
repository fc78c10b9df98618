"""Where the server is and which token to send: arguments, then the environment, then the
``state.json`` a running ``artifactlog up`` writes (as the CLI finds it)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from artifactlog.errors import ValidationError


def home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("ARTIFACTLOG_HOME") or Path.home() / ".artifactlog").expanduser()


def read_state(path: Path) -> dict[str, Any]:
    # Read here rather than through core.stack: that module pulls in the database drivers,
    # which a client process does not need.
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def resolve(url: str | None, token: str | None,
            environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """The server's base URL and the API token (None: send no Authorization header)."""
    env = os.environ if environ is None else environ
    url = url or env.get("ARTIFACTLOG_URL") or None
    token = token or env.get("ARTIFACTLOG_TOKEN") or None
    if url is None or token is None:
        state_file = home(env) / "state.json"
        state = read_state(state_file)
        url = url or state.get("api_url") or None
        token = token or state.get("token") or None
        if url is None:
            # `up` clears api_url when it stops, so an existing file means "not running".
            raise ValidationError(
                "no artifactlog server to talk to: pass url=, set ARTIFACTLOG_URL, or start "
                f"`artifactlog up` (no api_url in {state_file})")
    return base_url(url), token


def base_url(url: str) -> str:
    """The server root; a GraphQL endpoint URL (as GraphiQL shows it) is accepted too."""
    url = url.rstrip("/")
    return url.removesuffix("/graphql")
