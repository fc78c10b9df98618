"""Turning ingest input into stored bytes: one canonical encoding per content type, so the
same content always has the same sha256 digest."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.errors import LimitExceeded, ValidationError

JSON_MEDIA_TYPE = "application/json"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
BYTES_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Content:
    data: bytes
    digest: str
    content_type: str  # "json" | "text" | "bytes"
    media_type: str

    @property
    def size(self) -> int:
        return len(self.data)


def canonical_json(value: Any) -> bytes:
    """Key-sorted, compact, UTF-8 JSON. Refuses NaN and infinities, which JSON cannot carry."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"content is not valid JSON: {exc}") from exc


def encode_content(
    *,
    content: Any = None,
    text: str | None = None,
    content_base64: str | None = None,
    media_type: str | None = None,
    max_bytes: int,
) -> Content:
    """Exactly one of ``content`` (JSON), ``text`` or ``content_base64`` must be given."""
    given = [n for n, v in (("content", content), ("text", text), ("contentBase64", content_base64))
             if v is not None]
    if len(given) != 1:
        raise ValidationError(
            "give exactly one of content, text or contentBase64"
            + (f" (got {', '.join(given)})" if given else " (got none)")
        )
    if content is not None:
        data, content_type, default_media = canonical_json(content), "json", JSON_MEDIA_TYPE
    elif text is not None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(f"text is not valid UTF-8: {exc.reason}") from exc
        content_type, default_media = "text", TEXT_MEDIA_TYPE
    else:
        assert content_base64 is not None
        if len(content_base64) > (max_bytes * 4) // 3 + 4:
            raise LimitExceeded(_too_large(max_bytes))
        try:
            data = base64.b64decode(content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError(f"contentBase64 is not valid base64: {exc}") from exc
        content_type, default_media = "bytes", BYTES_MEDIA_TYPE
    if len(data) > max_bytes:
        raise LimitExceeded(_too_large(max_bytes), size=len(data))
    return Content(
        data=data,
        digest=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
        media_type=media_type or default_media,
    )


def decode_content(data: bytes, content_type: str) -> Any:
    """The inverse of ``encode_content`` for JSON and text; bytes stay bytes."""
    if content_type == "json":
        return json.loads(data)
    if content_type == "text":
        return data.decode("utf-8")
    return data


def _too_large(max_bytes: int) -> str:
    return f"content is larger than the limit of {max_bytes} bytes"
