"""The dashboard's Jinja2 templates (api/templates/dashboard/) and how its pages are sent.

Autoescaping is on for every template, SVG included: artifact metadata, labels, reasons and
actors are user data. The pages run no script (the home page refreshes with a meta tag), so
the Content-Security-Policy forbids scripts outright: markup that slipped through escaping
still could not run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"
STATIC_URL = "/static/dashboard"

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self';"
                               " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show what a token may read: never keep them in a shared cache.
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A moment as UTC, to the second."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"


def compact_json(value: Any, limit: int = 160) -> str:
    """Metadata on one line, cut at ``limit`` characters (the title attribute has it all)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(when=when, size=size, compact_json=compact_json, seconds=seconds,
                       full_json=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False,
                                                      default=str))
    env.globals["static_url"] = STATIC_URL
    return Jinja2Templates(env=env)


class Pages:
    """Renders dashboard templates with the dashboard's headers."""

    def __init__(self) -> None:
        self.templates = make_templates()

    def render(self, request: Request, name: str, context: Mapping[str, Any], *,
               status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return self.templates.TemplateResponse(
            request, f"dashboard/{name}", dict(context), status_code=status,
            headers={**HEADERS, **(headers or {})})
