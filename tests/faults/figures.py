"""Figures of the fault and abuse tests: each test records what it measured (lost, duplicates,
convergence seconds, 5xx count, inputs tried...), which is printed at the end of the run and
kept as JSON under ``test-artifacts/reliability/`` (ignored by git), where RELIABILITY.md's
tables come from: ``python -m tests.faults.figures`` prints them as Markdown.

``ARTIFACTLOG_LONG=1`` selects the long forms of the tests (``scale``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIGURES_DIR = ROOT / "test-artifacts" / "reliability"
LONG = os.environ.get("ARTIFACTLOG_LONG", "") not in ("", "0", "false", "no")

RECORDED: list[tuple[str, dict[str, Any]]] = []
_summary_printed = False


def scale(fast: int, long: int) -> int:
    """The size of a workload: ``fast`` by default, ``long`` with ARTIFACTLOG_LONG=1."""
    return long if LONG else fast


def save(nodeid: str, figures: dict[str, Any]) -> None:
    if not figures:
        return
    record = {"test": nodeid, "form": "long" if LONG else "fast",
              "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    RECORDED.append((nodeid, record))
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("tests/", 1)[-1])
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))


def summary_lines() -> list[str]:
    """The figures of this run, once per session (both conftests call this)."""
    global _summary_printed
    if _summary_printed or not RECORDED:
        return []
    _summary_printed = True
    lines = []
    for nodeid, record in RECORDED:
        shown = {k: v for k, v in record.items() if k not in ("test", "at", "form")}
        lines.append(f"{nodeid.split('::')[-1]}: {json.dumps(shown, default=str)}")
    return lines


def markdown(directory: Path = FIGURES_DIR) -> str:
    rows = ["| test | form | at | figures |", "|---|---|---|---|"]
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        shown = ", ".join(f"{k}={v}" for k, v in record.items()
                          if k not in ("test", "at", "form"))
        rows.append(f"| `{record['test'].split('::')[-1]}` | {record['form']} | {record['at']}"
                    f" | {shown} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown() + "\n")
