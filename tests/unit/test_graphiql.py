"""The offline GraphiQL page: nothing is left on the CDN, and the local files are the bytes
strawberry's page pins (its SRI hashes) and SOURCES.md lists (sha256)."""

from __future__ import annotations

import base64
import hashlib
import re

from api.graphiql import ASSETS, STATIC_DIR, STATIC_URL, external_loads, graphiql_html, template

SOURCES = STATIC_DIR / "SOURCES.md"
TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.DOTALL)


def attribute(tag: str, name: str) -> str | None:
    found = re.search(rf'\b{name}="([^"]*)"', tag)
    return found.group(1) if found else None


def test_the_page_loads_nothing_from_a_cdn() -> None:
    html = graphiql_html()
    # If this fails, strawberry pins other versions: update api/static/graphiql (SOURCES.md).
    assert "unpkg.com" not in html
    assert external_loads(html) == []
    for name in ASSETS.values():
        assert f'"{STATIC_URL}/{name}"' in html, name
    assert "GraphiQLPluginExplorer.explorerPlugin()" in html  # strawberry's markup, kept


def test_every_asset_of_the_template_has_a_local_copy_with_its_sri_hash() -> None:
    pinned = {}
    for tag in TAG.findall(template()):
        url = attribute(tag, "src") or attribute(tag, "href")
        if url and url.startswith("https://"):
            pinned[url] = attribute(tag, "integrity")
    assert set(pinned) == set(ASSETS), "strawberry's page pins other files than ASSETS"
    for url, integrity in pinned.items():
        digest = hashlib.sha384((STATIC_DIR / ASSETS[url]).read_bytes()).digest()
        # The browser enforces this hash: a file that differs would not load at all.
        assert integrity == "sha384-" + base64.b64encode(digest).decode(), url


def test_the_directory_holds_only_the_assets_and_sources_lists_their_sha256() -> None:
    assert sorted(p.name for p in STATIC_DIR.iterdir()) == sorted([*ASSETS.values(),
                                                                   "SOURCES.md"])
    sources = SOURCES.read_text()
    for name in ASSETS.values():
        sha256 = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()
        assert f"| `{name}` |" in sources, name
        assert f"`{sha256}`" in sources, name
