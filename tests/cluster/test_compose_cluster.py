"""compose.yaml runs the clustered topology: each role its own service, replicas where they
make sense, a three-node NATS cluster whose shared config the real nats-server accepts."""

from __future__ import annotations

import os
import subprocess

from core.runtime import nats_server_binary
from core.settings import Settings
from tests.test_compose import ROOT, environment, load_compose, service


def replicas(name: str) -> int:
    return int((service(name).get("deploy") or {}).get("replicas", 1))


def test_roles_scale_out_as_the_topology_says() -> None:
    assert replicas("api") >= 2
    assert replicas("relay") == 2  # one active, one standing by
    assert replicas("projection-version-history") == 3
    assert replicas("ingest") >= 2


def test_every_process_reaches_all_three_nats_nodes_with_replicated_streams() -> None:
    services = load_compose()["services"]
    nodes = [name for name in services if name == "nats" or name.startswith("nats-")]
    assert len(nodes) == 3
    for role in ("api", "relay", "projection-version-history", "projection-analytics"):
        settings = Settings.from_env({k: v for k, v in environment(role).items() if v})
        assert settings.nats_url is not None
        assert sorted(settings.nats_url.split(",")) == sorted(
            f"nats://{node}:4222" for node in nodes)
        assert settings.stream_replicas == 3


def test_each_nats_node_names_itself_and_the_config_is_valid() -> None:
    names = {environment(node)["NATS_SERVER_NAME"] for node in ("nats", "nats-2", "nats-3")}
    assert len(names) == 3
    result = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(ROOT / "deploy" / "nats.conf")],
        env={**os.environ, "NATS_SERVER_NAME": "nats-1"}, capture_output=True, text=True,
        check=False)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout + result.stderr
