"""core.logs without engines: JSON lines off a terminal, text on one, ids, and redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from core.logs import (
    accepted_correlation_id,
    bind_correlation_id,
    redact,
    reset_correlation_id,
    setup_logging,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_when_not_a_terminal_with_the_bound_correlation_id() -> None:
    out = io.StringIO()
    setup_logging("INFO", stream=out)
    token = bind_correlation_id("req-42")
    try:
        logging.getLogger("artifactlog.test").info("ingested %s", "ns/a", extra={"position": 7})
    finally:
        reset_correlation_id(token)
    logging.getLogger("artifactlog.test").debug("below the level")
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "ingested ns/a"
    assert (entry["level"], entry["logger"]) == ("INFO", "artifactlog.test")
    assert (entry["correlation_id"], entry["position"]) == ("req-42", 7)


@pytest.mark.usefixtures("restore_logging")
def test_text_on_a_terminal_and_setup_twice_keeps_one_handler() -> None:
    first, out = io.StringIO(), Terminal()
    setup_logging("INFO", stream=first)
    setup_logging("WARNING", stream=out)
    logging.getLogger("artifactlog.test").warning("disk %s", "full")
    assert first.getvalue() == ""
    assert out.getvalue().rstrip().endswith("WARNING artifactlog.test disk full")
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.getvalue())


@pytest.mark.usefixtures("restore_logging")
def test_secrets_never_reach_the_output() -> None:
    out = io.StringIO()
    setup_logging("INFO", stream=out)
    log = logging.getLogger("artifactlog.test")
    log.warning("connect failed: %s", "postgresql://app:s3cr3t-pw@db:5432/artifactlog")
    log.warning("headers %s", {"Authorization": "Bearer al_abcdefgh12345678"})
    log.warning("libpq: host=db password=hunter2 dbname=x")
    try:
        raise RuntimeError("nats://user:natspass@nats:4222 refused")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    for secret in ("s3cr3t-pw", "al_abcdefgh12345678", "hunter2", "natspass"):
        assert secret not in text
    assert "postgresql://app:***@db:5432/artifactlog" in text


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "relay published position=5 to http://nats:8222/jsz (4 ms)"
    assert redact(text) == text


def test_incoming_correlation_ids_are_taken_only_when_sane() -> None:
    assert accepted_correlation_id("job-7:step.2") == "job-7:step.2"
    for bad in (None, "", "has space", "x" * 129, "line\nbreak", '"quoted"'):
        made = accepted_correlation_id(bad)
        assert made != bad
        assert len(made) == 32
