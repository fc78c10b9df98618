"""Bearer-token authentication for the HTTP application, as a pure ASGI middleware.

The token is read from, first match wins:

1. ``Authorization: Bearer <token>`` (the CLI, the Python client, GraphiQL's headers editor);
2. the ``artifactlog_token`` cookie (a browser session), only on requests from this server's
   own pages: a cross-site request carrying it is refused (CSRF).

A valid token puts its ``core.auth.Principal`` in ``scope["state"]["principal"]``, which
Starlette shows as ``request.state.principal``. A missing or invalid one gets 401 with
``{"error": {"code": "UNAUTHENTICATED", "message": ...}}`` and ``WWW-Authenticate: Bearer``;
a token database that is down gets 503 (a client must not drop a good token over it).

A token that authenticated is trusted again, without a lookup, for ``cache_seconds``
(``AUTH_CACHE_SECONDS`` in the app): the lookup was a round trip and a commit on every
request, a large part of a small read. So a revoked token (``artifactlog token revoke``, any
process) is refused by every API process at most ``AUTH_CACHE_SECONDS`` after the revoke
commits. Only successes are kept (an unknown token is looked up every time, so a token
works the moment it is created, and junk tokens cannot fill the cache); the dashboard and
websockets authenticate uncached.

What passes without a token, and with no principal in scope:

- the public paths (health, readiness, metrics: probes carry no credentials);
- ``GET /graphql`` asking for HTML with no ``query`` parameter: that is the GraphiQL page,
  static HTML, and the queries it then sends carry the token. A GET that has a ``query``
  executes it (strawberry serves queries over GET), so it is authenticated like any other;
- websockets: browsers cannot set headers on a websocket, so GraphQL subscriptions
  authenticate with the token in the ``connection_init`` payload, checked by the GraphQL
  layer, not here;
- ``/static/``: GraphiQL's and the dashboard's scripts and styles (public code the pages
  need before they have a token);
- the dashboard (``/`` and ``/dashboard/``): its pages authenticate themselves, see
  api/dashboard.py;
- lifespan events.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core.auth import Principal, TokenService, token_digest
from core.errors import ArtifactlogError, Unauthenticated

COOKIE_NAME = "artifactlog_token"
GRAPHQL_PATH = "/graphql"
PUBLIC_PATHS = ("/healthz", "/metrics", "/readyz")
# GraphiQL's scripts and styles: public code, loaded before a user can give the page a token.
PUBLIC_PREFIXES = ("/static/",)
# The dashboard's pages check the token themselves (api/dashboard.py): a browser without one
# is sent to the sign-in form rather than given a 401 body, and only they read the session
# cookie, which must never authorize anything else.
DASHBOARD_PATHS = ("/",)
DASHBOARD_PREFIX = "/dashboard/"
# The bound on how long a revoked token keeps working over HTTP (see the module docstring).
AUTH_CACHE_SECONDS = 1.0
AUTH_CACHE_ENTRIES = 1024


class PrincipalCache:
    """Principals of tokens that authenticated within the last ``seconds``, by token digest
    (the plaintext is not kept), at most ``entries`` of them."""

    def __init__(self, seconds: float, entries: int = AUTH_CACHE_ENTRIES) -> None:
        self.seconds = seconds
        self.entries = entries
        self._found: dict[str, tuple[float, Principal]] = {}

    def get(self, digest: str) -> Principal | None:
        found = self._found.get(digest)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            del self._found[digest]
            return None
        return found[1]

    def put(self, digest: str, principal: Principal) -> None:
        now = time.monotonic()
        if len(self._found) >= self.entries:
            self._found = {k: v for k, v in self._found.items() if v[0] > now}
            while len(self._found) >= self.entries:  # all live: the oldest goes
                del self._found[next(iter(self._found))]
        self._found[digest] = (now + self.seconds, principal)


class TokenAuth:
    """Refuses HTTP requests without a valid API token, except the public ones (see module)."""

    def __init__(
        self, app: ASGIApp, tokens: TokenService, public_paths: Iterable[str] = PUBLIC_PATHS,
        *, cache_seconds: float = 0.0,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.public_paths = frozenset(public_paths)
        self.cache = PrincipalCache(cache_seconds) if cache_seconds > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_public(scope):
            await self.app(scope, receive, send)
            return
        token: str | None = None
        try:
            token = request_token(Headers(scope=scope))
            principal = await self._authenticate(token)
        except ArtifactlogError as exc:
            await refusal(exc, token_sent=bool(token))(scope, receive, send)
            return
        # A new state dict: the server may share the one it passed in (lifespan state).
        state = {**scope.get("state", {}), "principal": principal}
        await self.app({**scope, "state": state}, receive, send)

    async def _authenticate(self, token: str | None) -> Principal:
        if self.cache is None or not token:
            return await self.tokens.authenticate(token)
        digest = token_digest(token)
        principal = self.cache.get(digest)
        if principal is None:
            principal = await self.tokens.authenticate(token)
            self.cache.put(digest, principal)
        return principal

    def _is_public(self, scope: Scope) -> bool:
        path = route_path(scope)
        return (path in self.public_paths or path.startswith(PUBLIC_PREFIXES)
                or is_graphiql_page(scope, path)
                or path in DASHBOARD_PATHS or path.startswith(DASHBOARD_PREFIX))


def request_token(headers: Headers) -> str | None:
    """The token the request carries, None if it carries none."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return credentials.strip()
    token = cookie_parser(headers.get("cookie", "")).get(COOKIE_NAME)
    if token is not None and is_cross_site(headers):
        # A browser attaches cookies to requests other sites make it send (CSRF): the
        # session cookie counts only for requests from this server's own pages.
        raise Unauthenticated("the session cookie is accepted only from this server's pages;"
                              " send 'Authorization: Bearer <token>'")
    return token


def is_cross_site(headers: Headers) -> bool:
    """A request a page of another origin made the browser send (Fetch Metadata, else the
    Origin header against the Host the request was sent to)."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or origin.partition("://")[2] != headers.get("host", "")


def is_graphiql_page(scope: Scope, path: str) -> bool:
    """A browser loading GraphiQL: strawberry renders the page, and executes nothing, exactly
    for a GET without ``query`` that accepts HTML."""
    if scope["method"] != "GET" or path != GRAPHQL_PATH:
        return False
    params = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return "query" not in params and "text/html" in Headers(scope=scope).get("accept", "")


def route_path(scope: Scope) -> str:
    """The path the app routes on: without the root path a proxy may mount us under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):].startswith("/"):
        return path[len(root):]
    return path


def refusal(error: ArtifactlogError, *, token_sent: bool) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(error, Unauthenticated):
        # RFC 6750: name the error only when a token was presented.
        challenge = 'Bearer realm="artifactlog"'
        headers["WWW-Authenticate"] = challenge + (', error="invalid_token"' if token_sent else "")
    return JSONResponse({"error": {"code": error.code, "message": error.message}},
                        status_code=error.http_status, headers=headers)
