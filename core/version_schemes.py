"""How versions are described: each artifact has a version scheme that turns a new version
into its label. Pure functions; the clock and the content comparison are passed in.

- ``sequence``: v1, v2, ...
- ``semver``: MAJOR.MINOR.PATCH, bumped by the ingest's ``bump`` or, without one, by what
  changed: a breaking schema change is MAJOR, an additive one MINOR, content only PATCH.
- ``calver``: YYYY.MM.DD.N (N counts the versions of that day).
- ``digest``: the first 12 hex digits of the content's sha256.
- ``template``: placeholders {number}, {date} (YYYYMMDD), {digest} (12 hex digits) and
  {meta.KEY} (a top-level metadata field), e.g. "run-{meta.run_id}-{number}".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import ValidationError

KINDS = ("sequence", "semver", "calver", "digest", "template")
BUMPS = ("MAJOR", "MINOR", "PATCH")
PLACEHOLDER = re.compile(r"\{(number|date|digest|meta\.[A-Za-z0-9_-]+)\}")
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
MAX_LABEL_LENGTH = 128


@dataclass(frozen=True)
class VersionScheme:
    kind: str = "sequence"
    template: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "template": self.template}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionScheme:
        return cls(str(data["kind"]), data.get("template"))


SEQUENCE = VersionScheme()


def scheme_of(kind: str, template: str | None = None) -> VersionScheme:
    """A valid scheme, or ValidationError saying what is wrong."""
    if kind not in KINDS:
        raise ValidationError(f"unknown version scheme {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "template":
        if not template or not PLACEHOLDER.search(template):
            raise ValidationError("a template scheme needs a template with at least one of "
                                  "{number}, {date}, {digest}, {meta.KEY}")
        leftover = PLACEHOLDER.sub("", template)
        if "{" in leftover or "}" in leftover:
            raise ValidationError(f"template {template!r} has an unknown placeholder")
    elif template is not None:
        raise ValidationError(f"only the template scheme takes a template, not {kind}")
    return VersionScheme(kind, template)


def next_label(scheme: VersionScheme, *, number: int, digest: str, metadata: Mapping[str, Any],
               previous_labels: Iterable[str], bump: str, now: datetime) -> str:
    """The label of version ``number``; ``previous_labels`` are the artifact's labels so far
    (newest last), ``bump`` the semver bump in effect (explicit or derived)."""
    labels = list(previous_labels)
    if scheme.kind == "sequence":
        label = f"v{number}"
    elif scheme.kind == "semver":
        label = _bumped(_last_semver(labels), bump)
    elif scheme.kind == "calver":
        day = now.strftime("%Y.%m.%d")
        label = f"{day}.{sum(1 for lb in labels if lb.startswith(day + '.')) + 1}"
    elif scheme.kind == "digest":
        label = digest[:12]
    else:
        assert scheme.template is not None
        label = PLACEHOLDER.sub(lambda m: _placeholder(m.group(1), number, digest, metadata, now),
                                scheme.template)
    if label in labels:
        raise ValidationError(f"label {label!r} is already taken by another version; labels "
                              "are unique per artifact")
    if not 0 < len(label) <= MAX_LABEL_LENGTH:
        raise ValidationError(f"label must be 1-{MAX_LABEL_LENGTH} characters, got {label!r}")
    return label


def check_bump(bump: str | None) -> str | None:
    if bump is None:
        return None
    if bump.upper() not in BUMPS:
        raise ValidationError(f"bump must be one of {', '.join(BUMPS)}, not {bump!r}")
    return bump.upper()


def _last_semver(labels: list[str]) -> tuple[int, int, int] | None:
    for label in reversed(labels):
        if match := SEMVER.match(label):
            major, minor, patch = (int(g) for g in match.groups())
            return major, minor, patch
    return None


def _bumped(last: tuple[int, int, int] | None, bump: str) -> str:
    if last is None:
        return "1.0.0"
    major, minor, patch = last
    if bump == "MAJOR":
        return f"{major + 1}.0.0"
    if bump == "MINOR":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _placeholder(name: str, number: int, digest: str, metadata: Mapping[str, Any],
                 now: datetime) -> str:
    if name == "number":
        return str(number)
    if name == "date":
        return now.strftime("%Y%m%d")
    if name == "digest":
        return digest[:12]
    key = name.removeprefix("meta.")
    if key not in metadata or isinstance(metadata[key], dict | list):
        raise ValidationError(f"the label template needs metadata field {key!r} (a plain "
                              "value) and this version has none")
    return str(metadata[key])
