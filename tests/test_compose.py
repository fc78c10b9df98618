"""compose.yaml agrees with the code: the variables Settings reads, and durable JetStream.

Static checks only (no Docker, no engines): the file is parsed, not run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import ENVIRONMENT, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
URL_VARIABLES = sorted(var for var in ENVIRONMENT if var.endswith("_URL"))


def load_compose() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(compose, dict), "compose.yaml is not a mapping"
    assert isinstance(compose.get("services"), dict), "compose.yaml has no services mapping"
    return compose


def service(name: str) -> dict[str, Any]:
    services = load_compose()["services"]
    assert name in services, f"compose.yaml has no {name!r} service"
    return services[name]


def environment(name: str) -> dict[str, str | None]:
    """A service's environment, given as a mapping or as a list of KEY=VALUE.

    A bare KEY (passed through from the host) maps to None.
    """
    env = service(name).get("environment") or {}
    if isinstance(env, dict):
        return {str(key): None if value is None else str(value) for key, value in env.items()}
    assert isinstance(env, list), f"{name}: environment is neither a mapping nor a list"
    result: dict[str, str | None] = {}
    for entry in env:
        key, sep, value = str(entry).partition("=")
        result[key] = value if sep else None
    return result


def depends_on(name: str) -> dict[str, dict[str, Any]]:
    deps = service(name).get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: no condition
        return {dep: {} for dep in deps}
    return {dep: spec or {} for dep, spec in deps.items()}


def bind_mounts(name: str) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for each bind mount, in short or long syntax."""
    mounts = []
    for volume in service(name).get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target, _, mode = rest.partition(":")
            if source.startswith((".", "/")):
                mounts.append((source, target, "ro" in mode.split(",")))
        elif volume.get("type") == "bind":
            mounts.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
    return mounts


def test_url_variables_are_the_three_servers() -> None:
    # Guards the filter the other tests use: a renamed variable must not make them vacuous.
    assert {"DATABASE_URL", "NATS_URL", "CLICKHOUSE_URL"} <= set(URL_VARIABLES)


@pytest.mark.parametrize("name", ["postgres", "nats", "clickhouse", "api", "relay"])
def test_service_exists(name: str) -> None:
    assert isinstance(service(name), dict)


@pytest.mark.parametrize("name", ["postgres", "nats", "clickhouse", "api"])
def test_service_has_a_healthcheck(name: str) -> None:
    healthcheck = service(name).get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
    test = healthcheck.get("test")
    assert test, f"{name}: healthcheck has no test"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test is {test[0]!r}"
        assert len(test) > 1, f"{name}: healthcheck test has no command"


def test_api_sets_every_server_url() -> None:
    env = environment("api")
    for var in URL_VARIABLES:
        assert env.get(var), f"api does not set {var}"


def test_relay_sets_database_and_nats_urls() -> None:
    env = environment("relay")
    for var in ("DATABASE_URL", "NATS_URL"):
        assert env.get(var), f"relay does not set {var}"


@pytest.mark.parametrize("name", ["api", "relay"])
def test_environment_keys_are_read_by_settings(name: str) -> None:
    unknown = sorted(set(environment(name)) - set(ENVIRONMENT))
    assert unknown == [], f"{name} sets variables Settings never reads: {unknown}"


def test_nats_config_fsyncs_every_write() -> None:
    nats = service("nats")
    command = nats.get("command")
    if isinstance(command, str):
        command = command.split()
    assert isinstance(command, list), "nats has no command"
    assert "-c" in command, "nats is not started with a config file (-c)"
    config_path = command[command.index("-c") + 1]

    mounted = {target: (source, read_only) for source, target, read_only in bind_mounts("nats")}
    assert config_path in mounted, f"nats does not mount a file at {config_path}"
    source, read_only = mounted[config_path]
    assert read_only, "the nats config should be mounted read-only"

    config_file = (ROOT / source).resolve()
    assert config_file == ROOT / "deploy" / "nats.conf"
    # Comments stripped, so a commented-out setting does not count.
    config = "\n".join(line.split("#", 1)[0] for line in config_file.read_text().splitlines())
    jetstream = re.search(r"jetstream\s*[:=]?\s*\{(?P<body>[^}]*)\}", config)
    assert jetstream, "deploy/nats.conf has no jetstream block"
    assert re.search(r"\bsync_interval\s*[:=]?\s*\"?always\"?", jetstream["body"]), (
        "deploy/nats.conf does not set sync_interval: always in its jetstream block")


@pytest.mark.parametrize(("name", "needs"), [
    ("api", {"postgres", "nats", "clickhouse"}),
    ("relay", {"postgres", "nats", "api"}),
])
def test_depends_on_healthy_services(name: str, needs: set[str]) -> None:
    deps = depends_on(name)
    for dep in sorted(needs):
        assert dep in deps, f"{name} does not depend on {dep}"
        assert deps[dep].get("condition") == "service_healthy", (
            f"{name} does not wait for {dep} to be healthy")


@pytest.mark.parametrize("name", ["api", "relay"])
def test_settings_parse_the_compose_environment(name: str) -> None:
    env = {key: value for key, value in environment(name).items() if value is not None}
    settings = Settings.from_env(env)
    assert settings.database_url == env["DATABASE_URL"]
    assert settings.nats_url == env["NATS_URL"]
    assert settings.clickhouse_url == env.get("CLICKHOUSE_URL")
    assert env.get("ARTIFACTLOG_HOME"), f"{name} does not set ARTIFACTLOG_HOME"
    assert settings.home == Path(env["ARTIFACTLOG_HOME"])


def test_api_uses_the_compose_servers_not_embedded_engines() -> None:
    env = {key: value for key, value in environment("api").items() if value is not None}
    settings = Settings.from_env(env)
    assert settings.embedded is False
    assert settings.effective_clickhouse_url == env["CLICKHOUSE_URL"]


def test_every_process_role_runs_as_a_compose_service() -> None:
    from api.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    roles = set(next(a for a in run._actions if a.dest == "role").choices)
    commands = [s.get("command") or [] for s in load_compose()["services"].values()]
    served = {c[2] for c in commands if c[:2] == ["artifactlog", "run"]}
    assert roles == served, f"roles without a service: {roles - served}"
    projections = {c[4] for c in commands if c[:3] == ["artifactlog", "run", "projection"]}
    assert projections == {"version_history", "analytics"}
