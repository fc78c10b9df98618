"""Version schemes: each turns a new version into its label (pure; clock passed in)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.diff import semver_bump
from core.errors import ValidationError
from core.version_schemes import next_label, scheme_of

DAY = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
DIGEST = "ab" * 32


def label(kind: str, *, template: str | None = None, labels: tuple[str, ...] = (),
          bump: str = "PATCH", metadata: dict[str, object] | None = None,
          number: int | None = None) -> str:
    return next_label(scheme_of(kind, template), number=number or len(labels) + 1,
                      digest=DIGEST, metadata=metadata or {}, previous_labels=labels,
                      bump=bump, now=DAY)


def test_sequence() -> None:
    assert label("sequence", labels=("v1", "v2")) == "v3"


@pytest.mark.parametrize(("labels", "bump", "expected"), [
    ((), "PATCH", "1.0.0"), (("1.0.0",), "PATCH", "1.0.1"), (("1.2.3",), "MINOR", "1.3.0"),
    (("1.2.3",), "MAJOR", "2.0.0"), (("v1", "1.4.0", "rc"), "PATCH", "1.4.1"),
])
def test_semver(labels: tuple[str, ...], bump: str, expected: str) -> None:
    assert label("semver", labels=labels, bump=bump) == expected


def test_calver_counts_the_versions_of_the_day() -> None:
    assert label("calver") == "2026.11.26.1"
    assert label("calver", labels=("2026.11.25.1", "2026.11.26.1")) == "2026.11.26.2"


def test_digest_and_template() -> None:
    assert label("digest") == DIGEST[:12]
    assert label("template", template="run-{meta.run}-{number}-{date}",
                 metadata={"run": 42}, number=7) == "run-42-7-20261126"


def test_labels_are_unique_per_artifact() -> None:
    with pytest.raises(ValidationError, match="already taken"):
        label("template", template="{meta.run}", metadata={"run": "a"}, labels=("a",))


@pytest.mark.parametrize(("kind", "template", "message"), [
    ("roman", None, "unknown version scheme"), ("template", None, "needs a template"),
    ("template", "{number}-{nope}", "unknown placeholder"),
    ("semver", "{number}", "only the template"),
])
def test_bad_schemes_are_refused(kind: str, template: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        scheme_of(kind, template)


def test_template_needs_its_metadata() -> None:
    with pytest.raises(ValidationError, match="metadata field 'run'"):
        label("template", template="{meta.run}")


def test_semver_bump_is_derived_from_the_records_schema() -> None:
    old = [{"id": 1, "amount": 2.5}]
    assert semver_bump(old, [{"id": 1, "amount": 3.0}]) == "PATCH"  # content only
    assert semver_bump(old, [{"id": 1, "amount": 2.5, "currency": "EUR"}]) == "MINOR"
    assert semver_bump(old, [{"id": 1}]) == "MAJOR"  # a column removed
    assert semver_bump(old, [{"id": 1, "amount": "2.5"}]) == "MAJOR"  # a type changed
