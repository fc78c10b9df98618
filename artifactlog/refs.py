"""Version references: the one place a caller's ref becomes a GraphQL ``VersionRefInput``.

Accepted forms:

- ``"ns/name@3"`` (number), ``"ns/name@v3"`` (label), ``"ns/name"`` (the latest version);
- ``("ns", "name")``, ``("ns", "name", 3)``, ``("ns", "name", "v3")``;
- ``{"namespace": ..., "name": ..., "number": ...}`` or with ``"label"``;
- anything with ``namespace``, ``name`` and ``number`` attributes (a ``Version`` result).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from artifactlog.errors import InvalidArgument

REF_FORMS = '"ns/name", "ns/name@3", "ns/name@v3", (ns, name[, number|label]) or a dict'


class _VersionLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def number(self) -> int: ...


Ref = str | tuple[Any, ...] | Mapping[str, Any] | _VersionLike


@dataclass(frozen=True)
class VersionRef:
    """A version by number, by label, or (neither) the latest."""

    namespace: str
    name: str
    number: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        suffix = (f"@{self.number}" if self.number is not None
                  else f"@{self.label}" if self.label is not None else "")
        return f"{self.namespace}/{self.name}{suffix}"

    def to_input(self) -> dict[str, Any]:
        """The ``VersionRefInput`` variables (unset fields left out, as the server defaults)."""
        found: dict[str, Any] = {"namespace": self.namespace, "name": self.name}
        if self.number is not None:
            found["number"] = self.number
        if self.label is not None:
            found["label"] = self.label
        return found


def parse_ref(ref: Ref) -> VersionRef:
    """Any accepted form as a VersionRef; anything else is an InvalidArgument naming it.

    Only the shape is checked here: the server owns the rules for names and says which one
    a name breaks."""
    if isinstance(ref, VersionRef):
        return _checked(ref, ref)
    if isinstance(ref, str):
        return _checked(_from_string(ref), ref)
    if isinstance(ref, tuple):
        return _checked(_from_tuple(ref), ref)
    if isinstance(ref, Mapping):
        return _checked(_from_mapping(ref), ref)
    if all(hasattr(ref, a) for a in ("namespace", "name", "number")):
        return _checked(VersionRef(ref.namespace, ref.name, ref.number), ref)
    raise InvalidArgument(f"not a version ref: {ref!r}; expected {REF_FORMS}")


def _from_string(text: str) -> VersionRef:
    path, at, version = text.partition("@")
    namespace, slash, name = path.partition("/")
    if not slash or "/" in name or (at and not version):
        raise InvalidArgument(f"not a version ref: {text!r}; expected {REF_FORMS}")
    if not at:
        return VersionRef(namespace, name)
    # A bare number is a version number; anything else ("v3") is a label.
    if version.isascii() and version.isdigit():
        return VersionRef(namespace, name, number=int(version))
    return VersionRef(namespace, name, label=version)


def _from_tuple(parts: tuple[Any, ...]) -> VersionRef:
    if len(parts) == 2:
        return VersionRef(parts[0], parts[1])
    if len(parts) == 3:
        version = parts[2]
        if version is None:
            return VersionRef(parts[0], parts[1])
        if isinstance(version, int) and not isinstance(version, bool):
            return VersionRef(parts[0], parts[1], number=version)
        if isinstance(version, str):
            return VersionRef(parts[0], parts[1], label=version)
    raise InvalidArgument(f"not a version ref: {parts!r}; expected {REF_FORMS}")


def _from_mapping(fields: Mapping[str, Any]) -> VersionRef:
    unknown = set(fields) - {"namespace", "name", "number", "label"}
    if unknown:
        raise InvalidArgument(f"unknown version ref keys {sorted(unknown)} in {dict(fields)!r}")
    if "namespace" not in fields or "name" not in fields:
        raise InvalidArgument(f"a version ref needs namespace and name: {dict(fields)!r}")
    return VersionRef(fields["namespace"], fields["name"], fields.get("number"),
                      fields.get("label"))


def _checked(ref: VersionRef, given: object) -> VersionRef:
    if not (isinstance(ref.namespace, str) and ref.namespace
            and isinstance(ref.name, str) and ref.name):
        raise InvalidArgument(f"a version ref needs a non-empty namespace and name: {given!r}")
    if ref.number is not None and (isinstance(ref.number, bool)
                                   or not isinstance(ref.number, int) or ref.number < 1):
        raise InvalidArgument(f"a version number is an integer from 1: {given!r}")
    if ref.label is not None and (not isinstance(ref.label, str) or not ref.label):
        raise InvalidArgument(f"a version label is a non-empty string: {given!r}")
    if ref.number is not None and ref.label is not None:
        # The server would silently prefer the number; a caller giving both has a bug.
        raise InvalidArgument(f"give a version number or a label, not both: {given!r}")
    return ref
