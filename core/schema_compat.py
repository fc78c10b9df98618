"""Schema evolution under a compatibility mode, with Confluent Schema Registry's meanings.

BACKWARD: the new schema reads data written with the previous one (``old ⊆ new``): a consumer
upgrades first. FORWARD: the previous schema reads data written with the new one
(``new ⊆ old``): a producer upgrades first. FULL: both. ``*_TRANSITIVE``: against every
earlier version, not only the latest. NONE: anything goes. Pure functions, no I/O; the
inclusion itself is ``core.schema_subset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum
from typing import Any

from core.errors import ValidationError
from core.schema_subset import Reason, is_subset, same_schema

__all__ = ["DEFAULT_COMPATIBILITY", "Compatibility", "Reason", "check", "classify",
           "is_subset", "parse_compatibility"]


class Compatibility(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"
    FULL = "FULL"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def directions(self) -> tuple[str, ...]:
        base = self.value.removesuffix("_TRANSITIVE")
        return {"NONE": (), "BACKWARD": ("backward",), "FORWARD": ("forward",),
                "FULL": ("backward", "forward")}[base]


DEFAULT_COMPATIBILITY = Compatibility.BACKWARD


def parse_compatibility(mode: str | Compatibility) -> Compatibility:
    try:
        return Compatibility(str(mode).upper())
    except ValueError:
        known = ", ".join(m.value for m in Compatibility)
        raise ValidationError(f"unknown compatibility {mode!r}: use {known}") from None


def check(mode: str | Compatibility, new: Any, previous_versions: Sequence[Any]
          ) -> list[Reason]:
    """Reasons ``new`` may not follow ``previous_versions`` (oldest first) under ``mode``."""
    mode = parse_compatibility(mode)
    compared = list(enumerate(previous_versions, 1))
    compared = compared if mode.transitive else compared[-1:]
    reasons: list[Reason] = []
    for version, old in compared:
        for direction in mode.directions:
            found = (is_subset(old, new) if direction == "backward"
                     else is_subset(new, old, a_is_new=True))
            reasons += [replace(r, direction=direction, version=version) for r in found]
    return reasons


def classify(old: Any, new: Any) -> str:
    """The semver bump from ``old`` to ``new``: MAJOR breaks BACKWARD, MINOR is any other
    difference (annotations included), PATCH is an identical schema."""
    if same_schema(old, new):
        return "PATCH"
    return "MAJOR" if is_subset(old, new) else "MINOR"


