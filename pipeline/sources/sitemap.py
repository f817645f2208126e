"""Sitemap discovery: sitemap index files (nested), URL sets, and gzipped parts (``.xml.gz``).

XML is parsed with lxml set up for untrusted input: no entity expansion, no DTD loading, no network,
no huge trees; a document carrying a DOCTYPE is refused outright (sitemaps never need one). A gzipped
part is inflated in bounded steps, so a decompression bomb stops at ``MAX_SITEMAP_BYTES`` (the
sitemaps.org limit of 50 MiB). Nesting stops at ``max_depth`` and after ``max_sitemaps`` files; a
sitemap seen twice is read once. Sitemaps are fetched through the same polite ``Fetcher`` and robots
check as pages. A sitemap that cannot be fetched or parsed is reported, not fatal.

Settings that change it: ``max_depth``, ``max_sitemaps`` (arguments of ``iter_sitemap_urls``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import urljoin, urlsplit

from lxml import etree

from pipeline.sources.fetch import SITEMAP_TYPES, Fetcher, FetchFailed, gunzip_bounded
from pipeline.sources.robots import RobotsCache

MAX_SITEMAP_BYTES = 50 * 1024 * 1024


class SitemapError(ValueError):
    """A document that is not a usable sitemap."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_sitemap(
    content: bytes, base_url: str = "", *, limit: int = MAX_SITEMAP_BYTES
) -> tuple[str, list[str]]:
    """("index" | "urlset", absolute http(s) locations) from a sitemap's bytes (gzip or plain)."""
    if content[:2] == b"\x1f\x8b":
        try:
            content = gunzip_bounded(content, limit)
        except Exception as e:  # noqa: BLE001 - _Fatal carries the reason
            raise SitemapError(f"bad gzip sitemap: {e}") from None
    try:
        tree = etree.fromstring(content, _parser()).getroottree()
    except etree.XMLSyntaxError as e:
        raise SitemapError(f"not well-formed XML: {e.msg}") from None
    except ValueError as e:
        raise SitemapError(f"not XML: {e}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise SitemapError("sitemap declares a DTD (refused)")
    root = tree.getroot()
    kind = etree.QName(root).localname
    if kind == "sitemapindex":
        child = "sitemap"
    elif kind == "urlset":
        child = "url"
    else:
        raise SitemapError(f"not a sitemap (root element <{kind}>)")
    locs: list[str] = []
    for el in root:
        if not isinstance(el.tag, str) or etree.QName(el).localname != child:
            continue
        for sub in el:
            if isinstance(sub.tag, str) and etree.QName(sub).localname == "loc":
                text = "".join(t for t in sub.itertext()).strip()
                if not text:
                    continue
                url = urljoin(base_url, text) if base_url else text
                if urlsplit(url).scheme.lower() in ("http", "https"):
                    locs.append(url.split("#", 1)[0])
    return ("index" if kind == "sitemapindex" else "urlset"), locs


FailureHook = Callable[[str, str, int], None]


async def iter_sitemap_urls(
    sitemaps: list[str],
    fetcher: Fetcher,
    robots: RobotsCache | None,
    *,
    on_failure: FailureHook,
    max_depth: int = 4,
    max_sitemaps: int = 1000,
) -> AsyncIterator[str]:
    """Page URLs from the given sitemaps, depth first; problems go to ``on_failure(url, reason, tries)``."""
    stats = fetcher.stats
    seen: set[str] = set()
    stack: list[tuple[str, int]] = [(u, 0) for u in reversed(sitemaps)]
    while stack:
        url, depth = stack.pop()
        if url in seen:
            stats.inc("sitemap/duplicate")
            continue
        seen.add(url)
        if len(seen) > max_sitemaps:
            stats.inc("sitemap/over_limit")
            on_failure(url, f"more than {max_sitemaps} sitemaps", 0)
            continue
        if not fetcher.host_allowed(url):
            stats.inc("sitemap/offsite")
            on_failure(url, "sitemap on a host that is not allowed", 0)
            continue
        if robots is not None:
            ok, why = await robots.allowed(url)
            if not ok:
                stats.inc("sitemap/disallowed")
                on_failure(url, f"sitemap {why}", 0)
                continue
        try:
            resp = await fetcher.fetch(url, accept=SITEMAP_TYPES, max_bytes=MAX_SITEMAP_BYTES)
            kind, locs = parse_sitemap(resp.content, resp.final_url)
        except FetchFailed as e:
            stats.inc("sitemap/failed")
            on_failure(url, f"sitemap: {e.reason}", e.attempts)
            continue
        except SitemapError as e:
            stats.inc("sitemap/invalid")
            on_failure(url, f"sitemap: {e}", 1)
            continue
        stats.inc(f"sitemap/{kind}")
        if kind == "index":
            if depth >= max_depth:
                stats.inc("sitemap/too_deep")
                on_failure(url, f"sitemap index nested deeper than {max_depth}", 1)
                continue
            stack.extend((loc, depth + 1) for loc in reversed(locs))
        else:
            stats.inc("sitemap/urls", len(locs))
            for loc in locs:
                yield loc
