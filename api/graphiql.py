"""GraphiQL that works offline: strawberry's own page, loading its scripts and styles from us.

strawberry's ``graphiql.html`` loads React, GraphiQL, js-cookie and the explorer plugin from
a CDN (unpkg), which a machine without internet access cannot reach: the page then stays at
"Loading...". ``api/static/graphiql/`` holds the same files, byte for byte, from the npm
packages at the versions the page pins (``SOURCES.md`` there lists them), and
``graphiql_html()`` rewrites the page to load them from ``/static/graphiql/``.

The page's markup is read from the installed strawberry at run time, so an upgrade keeps
strawberry's page. Its SRI ``integrity`` hashes stay: they are the hashes of our copies too,
so the browser still checks every file (``tests/unit/test_graphiql.py`` checks that they
match). A strawberry that pins other versions leaves a CDN URL we have no copy of: the page
then still loads that file from the CDN where there is internet, a warning is logged, and
the unit test fails naming the URL (see ``SOURCES.md`` on updating the copies).

Authentication in the browser: the page sends its queries to the same origin, so a browser
sends the ``artifactlog_token`` cookie with them when it is set for the server. Without the
cookie, paste the token into GraphiQL's Headers pane as
``{"Authorization": "Bearer al_..."}`` (the page keeps it in the browser's local storage).
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

log = logging.getLogger(__name__)

STATIC_DIR: Path = Path(__file__).resolve().parent / "static" / "graphiql"
"""The files the page loads; mount at STATIC_URL, served without a token (they are public
code, and a browser loads them before anyone can paste a token)."""

STATIC_URL = "/static/graphiql"

# Every CDN URL in strawberry's graphiql.html -> the file in STATIC_DIR with the same bytes.
# Exact URLs, versions included: a template pinning other versions must not silently get
# our older files (the unit test names any URL left over).
ASSETS: dict[str, str] = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js":
        "react-dom.production.min.js",
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css":
        "graphiql-plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js":
        "graphiql-plugin-explorer.umd.js",
}

# Any absolute URL in a src or href attribute: the page must load nothing from elsewhere.
# (The icon's data: URL and the SVG namespace URL inside it are not loads.)
_EXTERNAL_LOAD = re.compile(r"""\b(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""",
                            re.IGNORECASE)


def template() -> str:
    """strawberry's GraphiQL page as the installed strawberry ships it."""
    return get_graphql_ide_html(graphql_ide="graphiql")


@cache
def graphiql_html(static_url: str = STATIC_URL) -> str:
    """strawberry's GraphiQL page loading its assets from ``static_url`` (where STATIC_DIR is
    mounted) instead of the CDN. Computed once per process: the template cannot change
    under a running server."""
    html = template()
    for url, name in ASSETS.items():
        html = html.replace(url, f"{static_url}/{name}")
    if left := external_loads(html):
        # Not an error at run time: with internet the page still works, and a 500 instead of
        # the IDE would help nobody. The unit test is what fails.
        log.warning("strawberry's GraphiQL page loads files we have no local copy of "
                    "(see api/static/graphiql/SOURCES.md): %s", ", ".join(left))
    return html


def external_loads(html: str) -> list[str]:
    """The URLs of other hosts that a page's src and href attributes load."""
    return _EXTERNAL_LOAD.findall(html)
