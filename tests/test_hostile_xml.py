"""Hostile XML: sitemaps are parsed with entity expansion, DTD loading and network access off.

Billion laughs, quadratic blow-up, external entities (file and HTTP, general and parameter), an
external DTD, XInclude, deep nesting and gzip bombs: each is refused with a ``SitemapError`` (or
parsed without expanding anything) in bounded time, and nothing is read from disk or the network:
a real HTTP server on 127.0.0.1 counts the requests a resolver would make (there must be none).
"""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sitemap = pytest.importorskip("pipeline.sources.sitemap", reason="the sitemap module is not there yet")
SitemapError = sitemap.SitemapError
parse_sitemap = sitemap.parse_sitemap

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
SECRET = "QXXMLSECRETQX"


def urlset(loc: str, doctype: str = "") -> bytes:
    return f'<?xml version="1.0"?>{doctype}<urlset {NS}><url><loc>{loc}</loc></url></urlset>'.encode()


def refused_or_inert(doc: bytes, *, limit: int | None = None) -> str:
    """Parse ``doc``: either a SitemapError (returned as text) or locations with nothing expanded."""
    try:
        kind, locs = parse_sitemap(doc) if limit is None else parse_sitemap(doc, limit=limit)
    except SitemapError as exc:
        text = str(exc)
        assert "\n" not in text and SECRET not in text
        return text
    joined = " ".join(locs)
    assert SECRET not in joined and "lollol" not in joined and len(joined) < 10_000
    return joined


@pytest.fixture
def http_hits() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving a DTD and an entity; yields (base URL, requested paths)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hits.append(self.path)
            body = f'<!ENTITY leak "{SECRET}">'.encode() if self.path.endswith(".dtd") else SECRET.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_sitemap_still_parses() -> None:
    """The control: the hostile cases below fail for their hostility, not for being sitemaps."""
    assert parse_sitemap(urlset("https://example.org/code/cpt4/63185")) == (
        "urlset",
        ["https://example.org/code/cpt4/63185"],
    )


def test_billion_laughs_is_refused_without_expansion() -> None:
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    with pytest.raises(SitemapError, match="DTD|entity amplification"):
        parse_sitemap(urlset("https://example.org/&lol9;", f"<!DOCTYPE urlset [{ents}]>"))


def test_quadratic_blowup_is_refused() -> None:
    big = "A" * 100_000
    doc = urlset("https://example.org/" + "&a;" * 20_000, f'<!DOCTYPE urlset [<!ENTITY a "{big}">]>')
    refused_or_inert(doc)


def test_external_file_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    for decl in (
        f'<!ENTITY xxe SYSTEM "{secret.as_uri()}">',
        f'<!ENTITY xxe PUBLIC "-//x//y" "{secret.as_uri()}">',
        f'<!ENTITY % p SYSTEM "{secret.as_uri()}"> %p;',
    ):
        refused_or_inert(urlset("https://example.org/&xxe;", f"<!DOCTYPE urlset [{decl}]>"))


def test_network_entities_and_external_dtds_are_never_fetched(http_hits: tuple[str, list[str]]) -> None:
    base, hits = http_hits
    doctypes = [
        f'<!DOCTYPE urlset SYSTEM "{base}/evil.dtd">',
        f'<!DOCTYPE urlset PUBLIC "-//evil//DTD" "{base}/public.dtd">',
        f'<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "{base}/entity">]>',
        f'<!DOCTYPE urlset [<!ENTITY % ext SYSTEM "{base}/param.dtd"> %ext;]>',
    ]
    for doctype in doctypes:
        refused_or_inert(urlset("https://example.org/&leak;&xxe;", doctype))
    xinclude = (
        f'<?xml version="1.0"?><urlset {NS} xmlns:xi="http://www.w3.org/2001/XInclude">'
        "<url><loc>https://example.org/x</loc></url>"
        f'<xi:include href="{base}/inc.xml" parse="text"/></urlset>'
    ).encode()
    refused_or_inert(xinclude)
    assert hits == []  # not one request reached the server


def test_a_doctype_hidden_behind_comments_or_in_utf16_is_still_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    doctype = f'<!-- a comment --><!DOCTYPE urlset [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
    doc = urlset("https://example.org/&xxe;", doctype)
    assert "DTD" in refused_or_inert(doc)
    utf16 = doc.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16")
    refused_or_inert(utf16)


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    depth = 100_000
    doc = (
        f"<urlset {NS}>{'<url>' * depth}<loc>https://example.org/x</loc>{'</url>' * depth}</urlset>".encode()
    )
    refused_or_inert(doc)


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"<" + b" " * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 200_000
    assert "bad gzip sitemap" in refused_or_inert(bomb, limit=4 * 1024 * 1024)


def test_a_gzipped_entity_attack_is_refused_too() -> None:
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    doc = gzip.compress(urlset("https://example.org/&lol9;", f"<!DOCTYPE urlset [{ents}]>"))
    with pytest.raises(SitemapError, match="DTD|entity amplification"):
        parse_sitemap(doc)


@pytest.mark.parametrize(
    "loc",
    ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x", "//example.org/x", "gopher://x/"],
)
def test_only_web_locations_come_out(loc: str) -> None:
    kind, locs = parse_sitemap(urlset(loc), "https://example.org/sitemap.xml")
    assert all(u.startswith(("http://", "https://")) for u in locs)
