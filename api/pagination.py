"""Relay cursor pagination: opaque cursors, bounded page sizes."""

from __future__ import annotations

import base64
import json
from typing import Any

from core.errors import LimitExceeded, ValidationError

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def page_size(first: int | None) -> int:
    size = DEFAULT_PAGE_SIZE if first is None else first
    if size < 0:
        raise ValidationError("first must not be negative")
    if size > MAX_PAGE_SIZE:
        raise LimitExceeded(f"first must be at most {MAX_PAGE_SIZE}")
    return size


def encode_cursor(kind: str, value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, value]).encode()).decode()


def decode_cursor(kind: str, cursor: str | None) -> Any:
    """The value inside a cursor of ``kind``; None when there is no cursor."""
    if cursor is None:
        return None
    try:
        found_kind, value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"invalid cursor {cursor!r}") from exc
    if found_kind != kind:
        raise ValidationError(f"cursor {cursor!r} is not a {kind} cursor")
    return value
