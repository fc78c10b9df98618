"""Signing in to the dashboard: an API token typed into a form, kept in a session cookie.

The cookie is HttpOnly (no page script can read it) and SameSite=Strict (a page of another
site cannot make the browser send it), and only the dashboard's GET pages read it: TokenAuth
never looks at it, so it cannot authorize a GraphQL mutation, an ingest or SQL, whatever a
forged cross-site request tries. The two POSTs here (sign in, sign out) refuse a browser's
cross-origin submission, so another site cannot sign a user in with a token of its choosing.

Pages also take ``Authorization: Bearer <token>`` (scripts, curl) and the
``artifactlog_token`` cookie a browser may already carry for GraphiQL.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.auth import request_token
from core.auth import Principal, Scope, TokenService
from core.errors import Forbidden, Unauthenticated, ValidationError

SESSION_COOKIE = "artifactlog_session"
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"
SESSION_SECONDS = 12 * 3600  # a browser left open signs in again after a working day
MAX_FORM_BYTES = 4096  # a token is 46 characters; the form has two short fields


def page_token(request: Request) -> str | None:
    """The token a dashboard GET carries: the header, else a cookie, else None."""
    return request_token(request.headers) or request.cookies.get(SESSION_COOKIE)


async def page_principal(request: Request, tokens: TokenService) -> Principal | None:
    """Who is looking, None when no token came at all; Unauthenticated for a bad one and
    Forbidden for a token without the read scope (every page reads)."""
    token = page_token(request)
    if token is None:
        return None
    principal = await tokens.authenticate(token)
    principal.require(Scope.READ)
    return principal


def local_target(value: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


# Why the form is shown, by code: the page prints only these texts, so a crafted link cannot
# put words of its own on our sign-in page.
REASONS = {
    "expired": "The token this browser sent is not valid (revoked, unknown or malformed):"
               " sign in again.",
    "signed-out": "Signed out.",
}


def login_redirect(request: Request, reason: str | None = None) -> RedirectResponse:
    """To the form, and back to this page after; ``reason`` is a key of REASONS."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": target, **({"reason": reason} if reason else {})}
    response = RedirectResponse(f"{LOGIN_PATH}?{urlencode(query)}", status_code=303)
    if reason:  # the cookie holds a token that no longer works: drop it
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def same_origin(request: Request) -> bool:
    """False for a browser's cross-site form post: its Origin names another host. Clients
    that send no Origin (curl, scripts) are not browsers forged into posting."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")


async def login_fields(request: Request) -> dict[str, str]:
    """The sign-in form's fields (application/x-www-form-urlencoded)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("the form is not valid URL-encoded UTF-8") from exc
    return {key: values[0] for key, values in fields.items() if values}


async def sign_in(request: Request, tokens: TokenService) -> tuple[Principal, str, str]:
    """Check a submitted form: (principal, token, where to go next)."""
    if not same_origin(request):
        raise Forbidden("sign-in forms are accepted only from this server's own pages")
    fields = await login_fields(request)
    token = fields.get("token", "").strip()
    if not token:
        raise Unauthenticated("enter an API token")
    principal = await tokens.authenticate(token)
    principal.require(Scope.READ)
    return principal, token, local_target(fields.get("next")
                                          or request.query_params.get("next"))


def with_session(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, path="/",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


def without_session(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response

