"""The JSON wire form of an ingest, shared by the HTTP bulk endpoint and the NATS ingest worker.

Inputs use the field names of the GraphQL contract's ``IngestInput``. These functions only
check what JSON cannot guarantee (shapes and types, which GraphQL checks for its callers);
every rule about the values themselves stays in the service, so a bad value gets the same
error here as through GraphQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.artifact import VersionState
from core.commands import IngestVersion, VersionRef
from core.errors import ArtifactlogError, ValidationError

if TYPE_CHECKING:
    from core.batch import IngestResult
    from core.services import ArtifactService

OPTIONAL_STRINGS = {"kind": "kind", "text": "text", "contentBase64": "content_base64",
                    "mediaType": "media_type", "producer": "producer",
                    "idempotencyKey": "idempotency_key", "bump": "bump",
                    "versionScheme": "scheme", "labelTemplate": "template"}
FIELDS = frozenset({"namespace", "name", "content", "metadata", "parents", "expectedVersion",
                    "force", *OPTIONAL_STRINGS})
REF_FIELDS = frozenset({"namespace", "name", "number", "label"})


def parse_json(raw: bytes | str) -> Any:
    """One JSON value; ValidationError names what is wrong with it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise ValidationError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValidationError("JSON nested too deeply") from exc


def command_from_json(data: Any, *, actor: str | None) -> IngestVersion:
    """An IngestVersion from one IngestInput object."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"expected an IngestInput JSON object, got {_json_type(data)}")
    if unknown := sorted(set(data) - FIELDS):
        raise ValidationError(f"unknown IngestInput field(s): {', '.join(unknown)}")
    strings = {attr: _string(data, field) for field, attr in OPTIONAL_STRINGS.items()}
    expected = data.get("expectedVersion")
    if expected is not None and not _is_int(expected):
        raise ValidationError("expectedVersion must be an integer")
    force = data.get("force")
    if force is not None and not isinstance(force, bool):
        raise ValidationError("force must be true or false")
    return IngestVersion(
        namespace=_required_string(data, "namespace"), name=_required_string(data, "name"),
        content=data.get("content"), metadata=data.get("metadata"),
        parents=_parents(data.get("parents")), expected_version=expected, force=bool(force),
        actor=actor, **strings)


def error_json(error: ArtifactlogError) -> dict[str, str]:
    return {"code": error.code, "message": error.message}


def version_json(version: VersionState) -> dict[str, Any]:
    """A version as the API shows it (the GraphQL ArtifactVersion's scalar fields)."""
    return {
        "namespace": version.namespace, "name": version.name, "number": version.number,
        "label": version.label, "stage": version.stage.value, "digest": version.digest,
        "size": version.size, "mediaType": version.media_type,
        "metadata": dict(version.metadata), "producer": version.producer,
        "createdAt": version.created_at.isoformat(), "position": version.position,
        "parents": [{"namespace": p.namespace, "name": p.name, "number": p.number}
                    for p in version.parents],
    }


async def ingest_each(
    service: ArtifactService, items: Sequence[IngestVersion | ArtifactlogError]
) -> list[IngestResult | ArtifactlogError]:
    """Bulk-ingest the commands among ``items`` (ingest_many, not atomic); items that are
    already errors (unparsable input) stay errors in their place."""
    commands = [item for item in items if isinstance(item, IngestVersion)]
    outcomes = iter(await service.ingest_many(commands, atomic=False))
    answers: list[IngestResult | ArtifactlogError] = []
    for item in items:
        if isinstance(item, ArtifactlogError):
            answers.append(item)
        else:
            outcome = next(outcomes)
            answers.append(outcome.error if outcome.error is not None else outcome.unwrap())
    return answers


def _required_string(data: Mapping[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise ValidationError(f"{field} is required and must be a string")
    return value


def _string(data: Mapping[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"{field} must be a string")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parents(value: Any) -> tuple[VersionRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError("parents must be a list of {namespace, name, number, label}")
    return tuple(_ref(item, i) for i, item in enumerate(value))


def _ref(item: Any, index: int) -> VersionRef:
    where = f"parents[{index}]"
    if not isinstance(item, Mapping):
        raise ValidationError(f"{where} must be an object {{namespace, name, number, label}}")
    if unknown := sorted(set(item) - REF_FIELDS):
        raise ValidationError(f"unknown field(s) in {where}: {', '.join(unknown)}")
    number = item.get("number")
    if number is not None and not _is_int(number):
        raise ValidationError(f"{where}.number must be an integer")
    namespace, name = item.get("namespace"), item.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        raise ValidationError(f"{where} needs namespace and name strings")
    label = item.get("label")
    if label is not None and not isinstance(label, str):
        raise ValidationError(f"{where}.label must be a string")
    return VersionRef(namespace, name, number, label)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
