"""Discovery and configuration: sitemaps (safe XML, gzip, nesting), robots.txt rules, Similar Codes links,
and the sources file."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.errors import UsageError
from pipeline.sources.config import CrawlSettings, load_sources
from pipeline.sources.crawl import similar_links
from pipeline.sources.fetch import Fetcher, HostRateLimiter
from pipeline.sources.robots import RobotsCache
from pipeline.sources.sitemap import SitemapError, iter_sitemap_urls, parse_sitemap

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locs: str) -> bytes:
    items = "".join(f"<url><loc>{u}</loc></url>" for u in locs)
    return f"<?xml version='1.0'?><urlset {NS}>{items}</urlset>".encode()


def index(*locs: str) -> bytes:
    items = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in locs)
    return f"<?xml version='1.0'?><sitemapindex {NS}>{items}</sitemapindex>".encode()


# ------------------------------------------------------------------ sitemap parsing


def test_urlsets_and_indexes_are_told_apart() -> None:
    assert parse_sitemap(urlset("http://s.test/a", " http://s.test/b ")) == (
        "urlset",
        ["http://s.test/a", "http://s.test/b"],
    )
    assert parse_sitemap(index("http://s.test/1.xml")) == ("index", ["http://s.test/1.xml"])


def test_gzipped_sitemaps_are_read_and_relative_or_odd_locations_handled() -> None:
    body = gzip.compress(urlset("/code/cpt4/1-a", "ftp://s.test/x", "", "http://s.test/c#frag"))
    kind, locs = parse_sitemap(body, "http://s.test/sitemaps/part.xml.gz")
    assert kind == "urlset" and locs == ["http://s.test/code/cpt4/1-a", "http://s.test/c"]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"<html><body>not a sitemap</body></html>", "not a sitemap"),
        (b"<urlset><url><loc>http://x", "not well-formed"),
        (b"", "not"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
            b"]><urlset><url><loc>http://s.test/&lol2;</loc></url></urlset>",
            "DTD",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<urlset><url><loc>http://s.test/&xxe;</loc></url></urlset>",
            "DTD",
        ),
        (gzip.compress(b"\0" * (2 * 1024 * 1024)), "bad gzip sitemap"),
    ],
)
def test_hostile_or_broken_sitemaps_are_refused(doc: bytes, reason: str) -> None:
    with pytest.raises(SitemapError, match=reason):
        parse_sitemap(doc, limit=1024 * 1024)


def test_external_entities_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        "<urlset><url><loc>http://s.test/&xxe;</loc></url></urlset>"
    ).encode()
    with pytest.raises(SitemapError) as e:
        parse_sitemap(doc)
    assert "TOP-SECRET" not in str(e.value)


def _fetcher(routes: dict[str, tuple[int, bytes, str]], **settings: Any) -> Fetcher:
    class Body(httpx.AsyncByteStream):
        def __init__(self, data: bytes) -> None:
            self.data = data

        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield self.data

    def handler(request: httpx.Request) -> httpx.Response:
        status, body, ctype = routes.get(str(request.url), (404, b"", "text/plain"))
        headers = {"content-type": ctype, "content-length": str(len(body))}
        return httpx.Response(status, headers=headers, stream=Body(body))

    s = CrawlSettings(**{"rate": 1000.0, "retries": 0, "jitter": 0.0, **settings})
    return Fetcher(s, allowed_hosts={"s.test"}, transport=httpx.MockTransport(handler))


def test_nested_indexes_cycles_and_failures_are_walked_once_and_reported() -> None:
    x = "application/xml"
    routes = {
        "http://s.test/robots.txt": (200, b"User-agent: *\nDisallow: /hidden/\n", "text/plain"),
        "http://s.test/sitemap.xml": (
            200,
            index(
                "http://s.test/a.xml",
                "http://s.test/nested.xml",
                "http://s.test/sitemap.xml",
                "http://s.test/missing.xml",
                "http://other.test/x.xml",
                "http://s.test/hidden/s.xml",
            ),
            x,
        ),
        "http://s.test/nested.xml": (200, index("http://s.test/b.xml.gz"), x),
        "http://s.test/a.xml": (200, urlset("http://s.test/p/1", "http://s.test/p/2"), x),
        "http://s.test/b.xml.gz": (200, gzip.compress(urlset("http://s.test/p/3")), "application/gzip"),
    }
    failures: list[tuple[str, str, int]] = []

    async def go() -> list[str]:
        async with _fetcher(routes) as f:
            robots = RobotsCache(f)
            it = iter_sitemap_urls(
                ["http://s.test/sitemap.xml"], f, robots, on_failure=lambda *a: failures.append(a)
            )
            return [u async for u in it]

    assert asyncio.run(go()) == ["http://s.test/p/1", "http://s.test/p/2", "http://s.test/p/3"]
    reasons = {u: r for u, r, _ in failures}
    assert set(reasons) == {
        "http://s.test/missing.xml",
        "http://other.test/x.xml",
        "http://s.test/hidden/s.xml",
    }
    assert reasons["http://s.test/missing.xml"] == "sitemap: HTTP 404"
    assert "not allowed" in reasons["http://other.test/x.xml"]
    assert "robots" in reasons["http://s.test/hidden/s.xml"]


# ------------------------------------------------------------------ robots.txt


def robots_for(status: int, body: bytes = b"", **settings: Any) -> tuple[RobotsCache, Fetcher]:
    f = _fetcher({"http://s.test/robots.txt": (status, body, "text/plain")}, **settings)
    return RobotsCache(f), f


def allowed(cache: RobotsCache, f: Fetcher, *urls: str) -> list[bool]:
    async def go() -> list[bool]:
        async with f:
            return [(await cache.allowed(u))[0] for u in urls]

    return asyncio.run(go())


def test_robots_disallow_allow_and_user_agent_groups() -> None:
    body = (
        b"User-agent: procpipe\nDisallow: /code/hcpcs/E0\nAllow: /code/hcpcs/E0100\n\n"
        b"User-agent: *\nDisallow: /\n"
    )
    cache, f = robots_for(200, body)
    assert allowed(
        cache,
        f,
        "http://s.test/code/cpt4/1",
        "http://s.test/code/hcpcs/E0101",
        "http://s.test/code/hcpcs/E0100",
    ) == [True, False, True]
    assert f.stats.counts["robots/request_count"] == 1  # fetched once per origin


def test_robots_crawl_delay_slows_the_host() -> None:
    cache, f = robots_for(200, b"User-agent: *\nCrawl-delay: 3\n", rate=10)
    allowed(cache, f, "http://s.test/a")
    assert f.limiter.interval("s.test") == 3


@pytest.mark.parametrize(("status", "expect"), [(404, True), (403, True), (500, False), (503, False)])
def test_missing_robots_allows_all_and_unreachable_robots_disallows_all(status: int, expect: bool) -> None:
    cache, f = robots_for(status)
    assert allowed(cache, f, "http://s.test/a") == [expect]


def test_rate_limiter_of_the_fetcher_is_used_for_robots() -> None:
    cache, f = robots_for(200, b"User-agent: *\nRequest-rate: 1/5\n", rate=10)
    assert isinstance(f.limiter, HostRateLimiter)
    allowed(cache, f, "http://s.test/a")
    assert f.limiter.interval("s.test") == 5


# ------------------------------------------------------------------ Similar Codes links


def test_similar_codes_links_are_taken_from_that_section_only() -> None:
    page = b"""<html><body><nav><a href="/code/cpt4/1-nav">nav</a></nav>
    <h1>Knee repair</h1><h2>Summary</h2><p>See <a href="/code/cpt4/2-inline">this</a>.</p>
    <h2>Similar Codes</h2>
    <ul><li><a href="/code/cpt4/3-a">3</a></li><li><a href="http://s.test/code/cpt4/4-b#top">4</a></li>
    <li><a href="mailto:x@y">mail</a></li><li><a href="/code/cpt4/3-a">dup</a></li></ul>
    <div><h3>More</h3><a href="../cpt4/5-c">5</a></div>
    <h2>Other</h2><a href="/code/cpt4/6-after">6</a></body></html>"""
    assert similar_links(page, "http://s.test/code/cpt4/0-self") == [
        "http://s.test/code/cpt4/3-a",
        "http://s.test/code/cpt4/4-b",
        "http://s.test/code/cpt4/5-c",
    ]


@pytest.mark.parametrize("page", [b"", b"\x00\x01\x02", b"plain text, no html", b"<h2>Similar Codes</h2>"])
def test_pages_without_similar_links_give_none(page: bytes) -> None:
    assert similar_links(page, "http://s.test/") == []


# ------------------------------------------------------------------ sources file


def test_sources_file_gives_each_source_its_job_and_settings(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("# extra pages\nhttp://b.test/code/cpt4/2-x\n\n")
    cfg = tmp_path / "sources.toml"
    cfg.write_text(
        """
[defaults]
rate = 3
concurrency = 2

[[sources]]
name = "alpha"
sitemaps = ["http://a.test/sitemap.xml"]
allowed_hosts = ["cdn.a.test"]
rate = 0.5

[[sources]]
name = "beta"
urls = ["http://b.test/code/cpt4/1-x"]
urls_file = "more.txt"
"""
    )
    jobs = load_sources(cfg).jobs()
    (ja, sa), (jb, sb) = jobs
    assert ja.source == "alpha" and ja.hosts() == {"a.test", "cdn.a.test"} and sa.rate == 0.5
    assert sa.concurrency == 2 and sb.rate == 3
    assert jb.urls == ["http://b.test/code/cpt4/1-x", "http://b.test/code/cpt4/2-x"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no \\[\\[sources\\]\\]"),
        ("[[sources]]\nname='a'\nrate=-1\n", "rate"),
        ("[[sources]]\nname='a'\nurls=['file:///etc/passwd']\n", "not an http"),
        ("[[sources]]\nname='a'\nbogus_setting=1\n", "bogus_setting"),
        ("[[sources]]\nname='a'\n[[sources]]\nname='a'\n", "unique"),
        ("[[sources]\n", "not valid TOML"),
        ("[[sources]]\nname='a'\nurls_file='nope.txt'\n", "cannot read URLs file"),
    ],
)
def test_bad_sources_files_are_usage_errors_naming_the_problem(
    tmp_path: Path, text: str, reason: str
) -> None:
    cfg = tmp_path / "sources.toml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=reason):
        load_sources(cfg)
