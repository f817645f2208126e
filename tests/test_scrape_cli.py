"""``procpipe scrape`` as a user runs it: interrupted crawls resume, exit codes, human output.

The interruption tests run the crawler as a real subprocess and stop it with Ctrl-C (SIGINT) or
``kill -9`` while it works through a fixture site with a little latency.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scrape_site import FixtureSite, Page

from pipeline.cli import main
from pipeline.sources.store import CrawlState

FAST = [
    "--rate",
    "2000",
    "--concurrency",
    "2",
    "--timeout",
    "0.5",
    "--retries",
    "1",
    "--backoff-base",
    "0.01",
]


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite(latency=0.02, crawl_delay=None) as s:
        yield s


def crawl_pages(site: FixtureSite) -> list[Page]:
    """The 100 pages the interrupted crawls work through."""
    return site.fetchable_pages[:100]


def intact_pages(raw: Path) -> dict[Path, int]:
    """Stored pages whose sidecar's sha256 matches (page path -> mtime ns)."""
    out: dict[Path, int] = {}
    for page in raw.rglob("*.html"):
        meta = page.with_name(page.stem + ".meta.json")
        if meta.is_file():
            sha = json.loads(meta.read_text())["sha256"]
            if hashlib.sha256(page.read_bytes()).hexdigest() == sha:
                out[page] = page.stat().st_mtime_ns
    return out


def _ctrl_c_as_a_terminal_gives_it() -> None:
    """In the child, before exec: SIGINT delivered and at its default, as a shell in the foreground
    gives it (a test run started in the background, as CI may, passes SIGINT on ignored or blocked,
    and a child would then never see this test's Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_and_interrupt(
    site: FixtureSite, raw: Path, sig: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    urls = raw.parent / "urls.txt"
    urls.write_text("\n".join(site.url(p.path) for p in crawl_pages(site)) + "\n")
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "scrape",
        "--urls-file",
        str(urls),
        "--raw-dir",
        str(raw),
        *FAST,
        # slower than FAST (the last --rate wins): the 100 pages take at least 2 s, so a busy
        # machine that wakes this poll loop late still signals a crawl that is running
        "--rate",
        "50",
        *extra,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_a_terminal_gives_it,
    )
    deadline = time.monotonic() + 60
    while len(list(raw.rglob("*.meta.json"))) < 30 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the crawl ended before it could be interrupted"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_crawl_resumes_without_refetching_what_it_stored(
    tmp_path: Path, site: FixtureSite, capsys: pytest.CaptureFixture[str], sig: int
) -> None:
    raw = tmp_path / "raw"
    first = start_and_interrupt(site, raw, sig)
    if sig == signal.SIGINT:
        assert first.returncode == 130 and "run the same command again to resume" in first.stderr
    else:
        assert first.returncode == -signal.SIGKILL
    done = intact_pages(raw)
    assert 30 <= len(done) < len(crawl_pages(site))
    done_paths = {"/" + "/".join(p.relative_to(raw).parts[1:]) for p in done}

    site.reset_log()
    capsys.readouterr()
    code = main(["scrape", "--json", "--urls-file", str(tmp_path / "urls.txt"), "--raw-dir", str(raw), *FAST])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["failed"] == []
    assert summary["fetched"] == len(crawl_pages(site)) - len(done)

    requested = {h.path for h in site.hits("/code/")}
    for page in crawl_pages(site):
        key = f"/{page.code_system}/{page.code}.html"
        if key in done_paths:
            assert page.path not in requested, f"{page.path} was stored before the interruption but refetched"
    for path, mtime in done.items():
        assert path.stat().st_mtime_ns == mtime
    assert len(intact_pages(raw)) == len(crawl_pages(site))
    # partial temporary files left by kill -9 are hidden, so the processing side never sees them
    assert all(p.name.startswith(".") for p in raw.rglob("*.part"))


def test_after_a_completed_crawl_a_rerun_refreshes_instead_of_skipping(
    tmp_path: Path, site: FixtureSite, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "raw"
    args = ["scrape", "--json", "--url", site.url(site.pages[3].path), "--raw-dir", str(raw), *FAST]
    assert main(args) == 0
    capsys.readouterr()
    site.reset_log()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["not_modified"] == 1
    assert [h.headers.get("if-none-match") for h in site.hits("/code/")] == [site.pages[3].etag]


def test_without_json_a_short_human_summary_is_printed(
    tmp_path: Path, site: FixtureSite, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--url", site.url(site.pages[0].path), "--url", site.fault_url("missing")]
    code = main(["scrape", *args, "--raw-dir", str(tmp_path / "raw"), *FAST])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("fetched 1, not modified 0, unchanged 0, disallowed 0, failed 1")
    assert f"failed: {site.fault_url('missing')}: HTTP 404" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to fetch"),
        (["--url", "ftp://x.test/a"], "not an http(s) URL"),
        (["--url", "http://x.test/a", "--rate", "0"], "--rate"),
        (["--url", "http://x.test/a", "--concurrency", "0"], "--concurrency"),
        (["--urls-file", "/nonexistent/urls.txt"], "cannot read URLs file"),
    ],
)
def test_usage_errors_exit_2_with_a_one_line_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["scrape", *args, "--raw-dir", str(tmp_path / "raw")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_crawl_that_cannot_run_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert main(["scrape", "--url", "http://127.0.0.1:9/a", "--raw-dir", str(not_a_dir / "raw")]) == 1
    assert "cannot create" in capsys.readouterr().err

    raw = tmp_path / "raw"
    holder = CrawlState(tmp_path / "journal.jsonl")
    holder.open("someone else")
    try:
        args = ["--url", "http://127.0.0.1:9/a", "--raw-dir", str(raw), "--state-file", str(holder.path)]
        assert main(["scrape", *args]) == 1
        assert "another crawl is using" in capsys.readouterr().err
    finally:
        holder.close()


def test_scrape_and_refresh_are_registered_on_the_main_cli(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("scrape", "refresh"):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
    help_text = capsys.readouterr().out
    for flag in (
        "--sitemap",
        "--urls-file",
        "--follow-similar",
        "--max-pages",
        "--rate",
        "--allow-host",
        "--config",
    ):
        assert flag in help_text


def test_refresh_with_a_bad_sources_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "sources.toml"
    cfg.write_text("[[sources]]\nname = 'a'\nrate = 0\n")
    assert main(["refresh", "--config", str(cfg)]) == 2
    assert "rate" in capsys.readouterr().err
