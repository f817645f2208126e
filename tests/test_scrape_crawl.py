"""Crawling the fixture site over real HTTP on 127.0.0.1 through ``procpipe scrape``.

The site (tests/scrape_site.py) has 220 pages, a sitemap index with a gzipped part, robots.txt and a
set of faults; a second server on 127.0.0.2 stands for "another host" and must never be reached.
Timeouts and backoff are tiny and the rate is high, except in the test of the rate window.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scrape_site import FixtureSite

from pipeline.api import parse_page
from pipeline.cli import main
from pipeline.sources.files import read_page
from pipeline.sources.store import code_of_url

FAST = [
    "--rate", "2000", "--concurrency", "4", "--timeout", "0.3", "--total-timeout", "3",
    "--backoff-base", "0.01", "--backoff-max", "0.05", "--retries", "2", "--max-bytes", str(256 * 1024),
    "--jitter", "0", "--no-fsync",
]  # fmt: skip

EXPECTED_FAILURES = {
    "slow": ("timed out", 3),
    "truncated": ("truncated body", 3),
    "oversize": ("body larger than 262144 bytes", 1),
    "oversize_stream": ("body larger than 262144 bytes", 1),
    "bomb": ("body larger than 262144 bytes", 1),
    "loop": ("redirect loop", 1),
    "chain": ("too many redirects", 1),
    "offhost": ("redirect to host 127.0.0.2 not allowed", 1),
    "metadata": ("redirect to host 169.254.169.254 not allowed", 1),
    "missing": ("HTTP 404", 1),
    "pdf": ("unsupported content type application/pdf", 1),
}


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[FixtureSite]:
    """Another host (127.0.0.2): nothing in these tests may ever reach it."""
    with FixtureSite(host="127.0.0.2") as other:
        yield other
    assert other.hits() == [], "a request reached the off-host server"


@pytest.fixture
def make_site(elsewhere: FixtureSite) -> Iterator[Callable[..., FixtureSite]]:
    sites: list[FixtureSite] = []

    def make(**kw: Any) -> FixtureSite:
        kw.setdefault("slow_seconds", 1.5)
        kw.setdefault("oversize_bytes", 512 * 1024)
        kw.setdefault("offhost_url", elsewhere.url(elsewhere.pages[0].path))
        site = FixtureSite(**kw).start()
        sites.append(site)
        return site

    yield make
    for s in sites:
        s.stop()


def scrape(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["scrape", "--json", *args])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def stored_files(raw: Path) -> dict[str, int]:
    """Every stored page and sidecar (relative path -> mtime in ns); journal excluded."""
    return {
        p.relative_to(raw).as_posix(): p.stat().st_mtime_ns
        for p in raw.rglob("*")
        if p.is_file() and ".crawl-state" not in p.parts
    }


def test_a_full_crawl_stores_every_fetchable_page_and_accounts_for_every_other_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_site: Callable[..., FixtureSite]
) -> None:
    site = make_site()
    raw = tmp_path / "raw"
    code, summary = scrape(capsys, "--sitemap", site.sitemap_url, "--raw-dir", str(raw), *FAST)

    assert code == 0
    assert list(summary) == ["fetched", "not_modified", "unchanged", "disallowed", "failed"]
    assert summary["fetched"] == len(site.fetchable_pages) == 216
    assert summary["disallowed"] == len(site.disallowed_pages) + 1 == 5  # + /private/staff-notes
    failed = {f["url"]: f for f in summary["failed"]}
    assert set(failed) == {site.fault_url(name) for name in EXPECTED_FAILURES}
    for name, (reason, attempts) in EXPECTED_FAILURES.items():
        f = failed[site.fault_url(name)]
        assert reason in f["reason"], (name, f)
        assert f["attempts"] == attempts, (name, f)

    # every fetchable page is stored byte for byte with its sidecar; a spread of them parse into records
    for i, page in enumerate(site.fetchable_pages):
        path = raw / "127.0.0.1" / page.code_system / f"{page.code}.html"
        got = read_page(path, raw)
        assert got.content == page.body
        assert got.meta["url"] == site.url(page.path) and got.meta["status"] == 200
        if i % 4 == 0 or page.code_system == "hcpcs":
            record = parse_page(got.content, url=got.meta["url"], path=got.path, meta=got.meta)
            assert (record.code, record.title) == (page.code, page.title)

    # nothing disallowed was requested; robots.txt once; the 429 retry waited for its Retry-After
    assert not [h.path for h in site.hits() if site.disallowed(h.path)]
    assert len(site.hits("/robots.txt")) == 1
    limited = site.hits(site.pages[7].path)
    assert len(limited) == 2 and limited[1].t - limited[0].t >= 1.0
    assert all(h.headers["user-agent"].startswith("procpipe/") for h in site.hits())

    # a second run asks conditionally for every stored page and rewrites none of them
    before = stored_files(raw)
    site.reset_log()
    code, again = scrape(capsys, "--sitemap", site.sitemap_url, "--raw-dir", str(raw), *FAST)
    assert code == 0
    assert again["fetched"] == 0
    assert again["not_modified"] == len(site.fetchable_pages) - 1
    assert again["unchanged"] == 1  # the page without validators came back identical
    assert {f["url"] for f in again["failed"]} == set(failed)
    page_hits = [h for h in site.hits("/code/") if not site.disallowed(h.path)]
    assert len(page_hits) == len(site.fetchable_pages)
    for h in page_hits:
        if h.path != site.pages[13].path:
            assert "if-none-match" in h.headers and "if-modified-since" in h.headers, h.path
    assert stored_files(raw) == before


def test_requests_never_exceed_the_rate_in_any_one_second_window(
    tmp_path: Path, make_site: Callable[..., FixtureSite]
) -> None:
    # the crawler runs in its own process so that the server's clock is not skewed by the crawler
    # competing for this process's GIL
    site = make_site(crawl_delay=None)
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(site.url(p.path) for p in site.pages[20:52]) + "\n")
    cmd = [sys.executable, "-m", "pipeline", "scrape", "--json", "--urls-file", str(urls)]
    cmd += ["--raw-dir", str(tmp_path / "raw"), "--rate", "20", "--concurrency", "4", "--no-fsync"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fetched"] == 32
    assert len(site.hits()) == 33  # robots.txt + 32 pages
    assert site.max_in_window(1.0) <= 20


def test_a_robots_crawl_delay_longer_than_the_rate_interval_is_honoured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_site: Callable[..., FixtureSite]
) -> None:
    site = make_site(crawl_delay=0.25)
    args = [x for p in site.pages[20:24] for x in ("--url", site.url(p.path))]
    code, summary = scrape(capsys, *args, "--raw-dir", str(tmp_path / "raw"), *FAST)
    assert code == 0 and summary["fetched"] == 4
    starts = [h.t for h in site.hits()]
    assert len(starts) == 5
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.24


def test_follow_similar_walks_the_similar_codes_links_n_levels_within_max_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_site: Callable[..., FixtureSite]
) -> None:
    site = make_site()
    n = len(site.pages)
    level = {0}
    expected = {0}
    for _ in range(2):
        level = {(i + k) % n for i in level for k in (1, 7, 13, 31)} - expected
        expected |= level
    raw = tmp_path / "raw"
    start = site.url(site.pages[0].path)
    code, summary = scrape(capsys, "--url", start, "--follow-similar", "2", "--raw-dir", str(raw), *FAST)
    assert code == 0
    stored = {p.stem for p in raw.rglob("*.html")}
    assert stored == {site.pages[i].code for i in expected}
    assert summary["fetched"] == len(expected) and not summary["failed"]

    raw2 = tmp_path / "raw2"
    code, capped = scrape(
        capsys, "--url", start, "--follow-similar", "5", "--max-pages", "7", "--raw-dir", str(raw2), *FAST
    )
    assert code == 0 and capped["fetched"] == 7
    assert len(list(raw2.rglob("*.html"))) == 7


def test_allowing_a_host_does_not_allow_private_addresses_behind_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_site: Callable[..., FixtureSite]
) -> None:
    site = make_site()
    code, summary = scrape(
        capsys,
        "--url", site.fault_url("offhost"), "--url", site.fault_url("metadata"),
        "--allow-host", "127.0.0.2", "--allow-host", "169.254.169.254",
        "--raw-dir", str(tmp_path / "raw"), *FAST,
    )  # fmt: skip
    assert code == 0
    reasons = {f["url"]: f["reason"] for f in summary["failed"]}
    assert re.search(r"refused non-public address 127\.0\.0\.2", reasons[site.fault_url("offhost")])
    assert "refused non-public address 169.254.169.254" in reasons[site.fault_url("metadata")]


def test_a_redirect_within_the_site_stores_the_page_under_its_final_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_site: Callable[..., FixtureSite]
) -> None:
    site = make_site()
    page = site.pages[30]
    raw = tmp_path / "raw"
    go = site.url(f"/go/{page.code}")
    code, summary = scrape(capsys, "--url", go, "--source", "fixture", "--raw-dir", str(raw), *FAST)
    assert code == 0 and summary["fetched"] == 1
    meta = json.loads((raw / "fixture" / "cpt4" / f"{page.code}.meta.json").read_text())
    assert meta["url"].endswith(f"/go/{page.code}") and meta["final_url"] == site.url(page.path)
    assert meta["source"] == "fixture" and code_of_url(meta["final_url"]) == ("cpt4", page.code)


def test_a_changed_page_is_refetched_and_only_it_is_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_site: Callable[..., FixtureSite]
) -> None:
    site = make_site()
    raw = tmp_path / "raw"
    args = [x for p in site.pages[40:43] for x in ("--url", site.url(p.path))] + [
        "--raw-dir",
        str(raw),
        *FAST,
    ]
    assert scrape(capsys, *args)[1]["fetched"] == 3
    before = stored_files(raw)
    changed = site.pages[41]
    changed.body = changed.body.replace(b"</main>", b"<p>Updated guidance.</p></main>")
    changed.etag = '"changed"'
    code, summary = scrape(capsys, *args)
    assert code == 0 and (summary["fetched"], summary["not_modified"]) == (1, 2)
    after = stored_files(raw)
    moved = {k for k in after if after[k] != before[k]}
    assert moved == {f"127.0.0.1/cpt4/{changed.code}.html", f"127.0.0.1/cpt4/{changed.code}.meta.json"}
    assert (raw / f"127.0.0.1/cpt4/{changed.code}.html").read_bytes() == changed.body


def test_unreachable_start_urls_are_failures_of_a_completed_crawl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FixtureSite() as gone:
        dead = gone.sitemap_url
    code, summary = scrape(capsys, "--sitemap", dead, "--raw-dir", str(tmp_path / "raw"), *FAST)
    assert code == 0
    assert [f["url"] for f in summary["failed"]] == [dead]
    assert "robots.txt unreachable" in summary["failed"][0]["reason"]
