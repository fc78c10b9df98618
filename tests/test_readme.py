"""The README shows what is tested: its test command is .ci/run's, its SQL examples are the
ones the analytics tests run."""

from __future__ import annotations

from pathlib import Path

from core.analytics_sql import EXAMPLE_QUERIES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = next(line for line in (ROOT / ".ci/run").read_text().splitlines()
                   if line.startswith("python3 -m venv"))
    assert f"```sh\n{command}\n```" in README


def test_readme_shows_the_tested_analytics_queries() -> None:
    for title, sql in EXAMPLE_QUERIES.items():
        assert f"```sql\n{sql}\n```" in README, title
