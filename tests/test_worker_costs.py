"""What the worker does per page besides parsing, made cheaper without changing any result: limits
read once a batch, the source URL checked without urlsplit when it is plainly a web address, app files
staged with one ``os.open``, and a worker's start-up objects frozen out of the garbage collector."""

from __future__ import annotations

import gc
import json
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline.api import SOURCE_SCHEMES, _check_source_url
from pipeline.errors import RejectedPage
from pipeline.process import pool_context, process_batch
from pipeline.publish.appfiles import prepare

PAGE = """Knee Arthroscopy
CPT code 29881

Summary
A surgeon looks inside the knee through a small camera and trims a torn cartilage.
"""


def write_raw(raw: Path, names: list[str]) -> list[str]:
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        (raw / name).write_text(PAGE, encoding="utf-8")
    return names


def slow_verdict(url: str) -> str | None:
    """The source URL check as it was before its shortcut: urlsplit every URL."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError as exc:
        return f"malformed source URL ({exc})"
    return None if scheme in SOURCE_SCHEMES else f"source URL is not a web address ({scheme}:)"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/code/cpt/29881",
        "http://example.org/a?b=c#d",
        "https://[::1",
        "http://[::1]:8080/x",
        "https://exa]mple.org/",
        "https://exämple.org/x",
        "https://example.org\uff03/x",
        "HTTPS://EXAMPLE.ORG/",
        "  https://example.org/x  ",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///tmp/page.html",
        "relative/page.html",
    ],
)
def test_the_source_url_check_agrees_with_urlsplit(url: str) -> None:
    try:
        _check_source_url(url)
        verdict = None
    except RejectedPage as exc:
        verdict = exc.reason
    assert verdict == slow_verdict(url)


def test_a_bad_limit_in_the_environment_still_rejects_every_page_of_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Limits are read once a batch; when the environment's are unusable each page meets the error
    itself, as it did when every page read them."""
    names = write_raw(tmp_path / "raw", ["a.txt", "b.txt"])
    monkeypatch.setenv("PROCPIPE_MAX_DEPTH", "deep")
    results = process_batch(names, str(tmp_path / "raw"))
    assert [r["reject"]["source"] for r in results] == names
    for r in results:
        assert r["reject"]["reason"].startswith("internal error: UsageError: PROCPIPE_MAX_DEPTH")
    monkeypatch.delenv("PROCPIPE_MAX_DEPTH")
    assert all("record" in r for r in process_batch(names, str(tmp_path / "raw")))


def test_a_staged_app_file_is_written_once_with_the_usual_permissions(tmp_path: Path) -> None:
    line = json.dumps({"code_system": "cpt", "code": "29881", "title": "Knee"}).encode() * 3000
    rec = {"code_system": "cpt", "code": "29881", "title": "Knee"}
    first = prepare(line, rec, tmp_path)
    second = prepare(b"another page", rec, tmp_path)
    staged = tmp_path / "cpt" / "29881.json"
    assert staged.read_bytes() == line
    assert first[7] is True and second[7] is False  # the second page leaves the file to publish
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(staged.stat().st_mode) == 0o666 & ~umask  # as open(name, "xb") makes it


def test_a_worker_freezes_its_start_up_objects_and_first_batch_caches_but_the_main_process_does_not(
    tmp_path: Path,
) -> None:
    names = write_raw(tmp_path / "raw", ["a.txt"])
    before = gc.get_freeze_count()
    assert "record" in process_batch(names, str(tmp_path / "raw"))[0]
    assert gc.get_freeze_count() == before  # here, garbage frozen now would never be collected
    with ProcessPoolExecutor(1, mp_context=pool_context()) as pool:
        assert pool.submit(gc.get_freeze_count).result() == 0
        assert "record" in pool.submit(process_batch, names, str(tmp_path / "raw")).result()[0]
        first = pool.submit(gc.get_freeze_count).result()
        assert first > 0
        pool.submit(process_batch, names, str(tmp_path / "raw")).result()  # what batch 1 cached
        assert pool.submit(gc.get_freeze_count).result() > first
