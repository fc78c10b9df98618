"""The dashboard: server-rendered pages over the application services, no script, no build.

    GET  /                                         status, lag, charts, recent activity
    GET  /dashboard/artifacts/{namespace}/{name}   history with stages, promotions timeline
    GET  /dashboard/lineage/{namespace}/{name}/{number}   the lineage picture
    GET  /dashboard/login   POST /dashboard/login   POST /dashboard/logout

TokenAuth lets these paths through (``DASHBOARD_PREFIX`` in api/auth.py): pages authenticate
themselves, so that a browser without a token lands on the sign-in form instead of a 401 body,
and so that the session cookie is read here and nowhere else (api/dashboard_auth.py). Every
page answers a bad parameter with 400, a missing artifact with 404, an unreachable dependency
with 503, each as a page naming the problem.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from nats.errors import Error as NatsError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from api import dashboard_views as views
from api.context import Services
from api.dashboard_auth import (
    LOGIN_PATH,
    LOGOUT_PATH,
    REASONS,
    local_target,
    login_redirect,
    page_principal,
    same_origin,
    sign_in,
    with_session,
    without_session,
)
from api.dashboard_lineage import NODE_H, NODE_W
from api.dashboard_templates import Pages
from api.schema import DEFAULT_LINEAGE_DEPTH, MAX_LINEAGE_DEPTH
from core.artifact import NAME_PATTERN, Stage, validate_name
from core.auth import Principal, TokenService
from core.errors import ArtifactlogError, Forbidden, NotFound, Unavailable, ValidationError

MAX_INT = 2**31 - 1  # version numbers are Postgres integers

View = Callable[[Request, Principal], Awaitable[tuple[str, dict[str, Any]]]]


class BadParameter(ValidationError):
    """A query or path parameter a page cannot use: 400, like any malformed request."""

    http_status = 400


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return bounded_int(name, raw, low, high)


def bounded_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be between {low} and {high}")
    return value


def stage_param(request: Request) -> Stage | None:
    raw = request.query_params.get("stage")
    if not raw:
        return None
    try:
        return Stage(raw.upper())
    except ValueError:
        known = ", ".join(s.value for s in Stage)
        raise BadParameter(f"stage must be one of {known}, not {raw!r}") from None


def prefix_param(request: Request) -> str:
    prefix = request.query_params.get("prefix", "").strip()
    if prefix and (len(prefix) > 128 or not NAME_PATTERN.match(prefix)):
        raise BadParameter("prefix must be the start of a name: letters, digits, '_' or '-'")
    return prefix


def artifact_path(request: Request) -> tuple[str, str]:
    """The artifact a path names; a name that cannot exist is simply not found."""
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    try:
        validate_name("namespace", namespace)
        validate_name("name", name)
    except ValidationError:
        raise NotFound(f"there is no artifact {namespace}/{name}") from None
    return namespace, name


def dashboard_routes(services: Services, tokens: TokenService) -> list[BaseRoute]:
    pages = Pages()

    def failure(request: Request, error: ArtifactlogError) -> Response:
        return pages.render(request, "error.html", {"error": error, "principal": None},
                            status=error.http_status)

    def page(view: View) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                principal = await page_principal(request, tokens)
                if principal is None:
                    return login_redirect(request)
                template, context = await view(request, principal)
            except ArtifactlogError as exc:
                if exc.code == "UNAUTHENTICATED":
                    return login_redirect(request, reason="expired")
                return failure(request, exc)
            except (psycopg.OperationalError, NatsError, TimeoutError):
                return failure(request, Unavailable("a database or NATS is unavailable; the "
                                                    "page will load again once it is back"))
            return pages.render(request, template, {**context, "principal": principal})
        return endpoint

    async def home(request: Request, principal: Principal) -> tuple[str, dict[str, Any]]:
        minutes = int_param(request, "minutes", 60, 5, 24 * 60)
        view = await views.home(services, principal, minutes=minutes,
                                prefix=prefix_param(request))
        return "home.html", {"view": view}

    async def artifact(request: Request, principal: Principal) -> tuple[str, dict[str, Any]]:
        stage = stage_param(request)
        after = (int_param(request, "after", 0, 0, MAX_INT)
                 if request.query_params.get("after") else None)
        namespace, name = artifact_path(request)
        view = await views.artifact(services, principal, namespace, name, stage=stage,
                                    after=after)
        return "artifact.html", {"view": view}

    async def lineage(request: Request, principal: Principal) -> tuple[str, dict[str, Any]]:
        depth = int_param(request, "depth", DEFAULT_LINEAGE_DEPTH, 1, MAX_LINEAGE_DEPTH)
        number = bounded_int("version number", request.path_params["number"], 1, MAX_INT)
        namespace, name = artifact_path(request)
        view = await views.lineage(services, principal, namespace, name, number, depth=depth)
        return "lineage.html", {"view": view, "node_w": NODE_W, "node_h": NODE_H}

    async def login_form(request: Request) -> Response:
        return login_page(request, status=200)

    def login_page(request: Request, *, status: int, error: str | None = None) -> Response:
        # The form posts to ?next=..., so a failed attempt still knows where to go after.
        return pages.render(request, "login.html", {
            "principal": None, "error": error,
            "reason": REASONS.get(request.query_params.get("reason", "")),
            "next": local_target(request.query_params.get("next"))}, status=status)

    async def login(request: Request) -> Response:
        try:
            _, token, target = await sign_in(request, tokens)
        except ArtifactlogError as exc:  # a bad token, a foreign form, a database down
            return login_page(request, status=exc.http_status, error=exc.message)
        return with_session(RedirectResponse(target, status_code=303), request, token)

    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return failure(request, Forbidden("sign out from this server's own pages"))
        return without_session(RedirectResponse(f"{LOGIN_PATH}?reason=signed-out",
                                                status_code=303))

    return [
        Route("/", page(home), methods=["GET"]),
        Route("/dashboard/artifacts/{namespace}/{name}", page(artifact), methods=["GET"]),
        Route("/dashboard/lineage/{namespace}/{name}/{number}", page(lineage),
              methods=["GET"]),
        Route(LOGIN_PATH, login_form, methods=["GET"]),
        Route(LOGIN_PATH, login, methods=["POST"]),
        Route(LOGOUT_PATH, logout, methods=["POST"]),
    ]
