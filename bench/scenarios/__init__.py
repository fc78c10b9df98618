"""One module per scenario of issue 7, each with ``NAME``, ``TITLE`` and ``async run(bench)``
adding its metrics to ``bench``. Modules load on demand: a scenario's child process (diff)
must not pay for the others' imports (chDB alone maps ~200 MB)."""

from __future__ import annotations

import importlib
from types import ModuleType

# In-process scenarios first, before the shared server exists to compete for the CPU; memory
# first among the server's, so that "idle" is a fresh server.
RUN_ORDER = ("relay", "projections", "diff", "memory", "ingest", "graphql", "reads",
             "freshness")


def load(name: str) -> ModuleType:
    if name not in RUN_ORDER:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(RUN_ORDER)}")
    return importlib.import_module(f"bench.scenarios.{name}")
