"""The raw store the scraper writes: layout, safe names, atomic and idempotent writes, the crawl journal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.sources.files import read_page
from pipeline.sources.store import (
    CrawlState,
    RawStore,
    StateLocked,
    StoreError,
    code_of_url,
    safe_name,
    slug_of_url,
)

PAGE = b"<html><body><h1>Knee repair</h1></body></html>"


def save(store: RawStore, url: str, content: bytes = PAGE, **kw: object) -> tuple[str, Path]:
    args: dict[str, object] = {
        "url": url,
        "final_url": url,
        "source": None,
        "status": 200,
        "content": content,
        "content_type": "text/html; charset=utf-8",
        "etag": '"v1"',
        "last_modified": "Tue, 14 Nov 2023 22:13:20 GMT",
    }
    args.update(kw)
    return store.save(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://genhealth.ai/code/cpt4/63185-laminectomy-with-rhizotomy", ("cpt4", "63185")),
        ("https://genhealth.ai/code/hcpcs/A4253", ("hcpcs", "A4253")),
        ("https://genhealth.ai/code/icd10cm/M54.5-low-back-pain", ("icd10cm", "M54.5")),
        ("https://genhealth.ai/code/cpt4/", None),
        ("https://genhealth.ai/about", None),
        ("https://genhealth.ai/code/cpt4/..-x", None),
        ("https://genhealth.ai/code/%2e%2e/%2e%2e", None),
        ("https://genhealth.ai/code/cpt4/63185-a/extra", None),
    ],
)
def test_code_system_and_code_come_from_the_url(url: str, expected: tuple[str, str] | None) -> None:
    assert code_of_url(url) == expected


def test_code_pages_land_under_source_system_and_code_with_a_sidecar(tmp_path: Path) -> None:
    store = RawStore(tmp_path, durable=False)
    url = "https://genhealth.ai/code/cpt4/63185-laminectomy"
    outcome, path = save(store, url, source="genhealth")
    assert outcome == "fetched"
    assert path == (tmp_path / "genhealth/cpt4/63185.html").resolve()
    meta = json.loads((tmp_path / "genhealth/cpt4/63185.meta.json").read_text())
    fields = "url final_url status fetched_at content_type etag last_modified sha256 source"
    assert set(meta) >= set(fields.split())
    assert meta["source"] == "genhealth" and meta["status"] == 200 and meta["fetched_at"].endswith("Z")
    assert (meta["code_system"], meta["code"]) == ("cpt4", "63185")
    # the processing side reads it back, sha256 check included
    page = read_page(path, tmp_path)
    assert page.content == PAGE and page.meta["url"] == url


def test_source_defaults_to_the_host_and_text_pages_keep_a_text_extension(tmp_path: Path) -> None:
    store = RawStore(tmp_path, durable=False)
    _, path = save(store, "http://127.0.0.1:8123/code/hcpcs/A4253", content_type="text/plain")
    assert path == (tmp_path / "127.0.0.1/hcpcs/A4253.txt").resolve()


def test_pages_without_a_code_get_a_stable_safe_slug(tmp_path: Path) -> None:
    store = RawStore(tmp_path, durable=False)
    _, a = save(store, "https://site.test/guides/knee")
    assert a == (tmp_path / "site.test/guides_knee.html").resolve()
    _, b = save(store, "https://site.test/search?q=knee pain&x=1")
    assert b.parent == (tmp_path / "site.test").resolve() and b.name.startswith("search_q-knee-pain-x-1-")
    assert slug_of_url("https://site.test/search?q=knee pain&x=1") == b.stem  # stable


@pytest.mark.parametrize(
    "url",
    [
        "http://site.test/../../../../etc/passwd",
        "http://site.test/%2e%2e/%2e%2e/%2e%2e/tmp/evil",
        "http://site.test/code/..%2f..%2f/..%2f..%2fevil",
        "http://site.test/code/cpt4/..%2F..%2Fevil-x",
        "http://site.test/.hidden/.bashrc",
        "http://site.test/" + "a" * 5000,
        "http://site.test/%00%01%02/\u202eexe.html",
        "http://..:80/code/cpt4/1",
    ],
)
def test_no_url_can_write_outside_the_raw_dir(tmp_path: Path, url: str) -> None:
    raw = tmp_path / "raw"
    store = RawStore(raw, durable=False)
    try:
        _, path = save(store, url, source=None)
    except StoreError:
        return
    assert path.resolve().is_relative_to(raw.resolve())
    assert not any(part.startswith(".") for part in path.relative_to(raw.resolve()).parts)
    assert len(path.name) < 120
    assert {p.name for p in tmp_path.iterdir()} == {"raw"}


@pytest.mark.parametrize("source", ["../outside", "/etc", "..", ".", "a/b", "\x00"])
def test_no_source_name_can_write_outside_the_raw_dir(tmp_path: Path, source: str) -> None:
    raw = tmp_path / "raw"
    _, path = save(RawStore(raw, durable=False), "http://site.test/code/cpt4/1-x", source=source)
    assert path.resolve().is_relative_to(raw.resolve())
    assert safe_name(source) not in ("", ".", "..")


def test_a_symlinked_folder_inside_the_store_cannot_redirect_writes(tmp_path: Path) -> None:
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    (raw / "site.test").mkdir(parents=True)
    outside.mkdir()
    (raw / "site.test" / "cpt4").symlink_to(outside)
    with pytest.raises(StoreError):
        save(RawStore(raw, durable=False), "http://site.test/code/cpt4/1-x")
    assert list(outside.iterdir()) == []


def test_an_identical_body_writes_nothing_and_a_changed_one_replaces_atomically(tmp_path: Path) -> None:
    store = RawStore(tmp_path, durable=True)
    url = "http://site.test/code/cpt4/1-x"
    _, path = save(store, url)
    meta = path.with_name("1.meta.json")
    before = (path.stat().st_mtime_ns, meta.stat().st_mtime_ns, path.stat().st_ino)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    outcome, _ = save(store, url)
    assert outcome == "unchanged" and path.stat().st_mtime_ns == 1_000_000_000
    assert meta.stat().st_mtime_ns == before[1]
    outcome, _ = save(store, url, content=PAGE + b"<p>new</p>")
    assert outcome == "fetched" and path.read_bytes().endswith(b"<p>new</p>")
    assert path.stat().st_ino != before[2]  # a new file renamed into place, not rewritten in place
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_a_damaged_stored_file_is_rewritten_even_when_the_body_matches_the_sidecar(tmp_path: Path) -> None:
    store = RawStore(tmp_path, durable=False)
    url = "http://site.test/code/cpt4/1-x"
    _, path = save(store, url)
    path.write_bytes(b"garbage")
    assert save(store, url)[0] == "fetched" and path.read_bytes() == PAGE


def test_a_content_type_change_replaces_the_old_extension(tmp_path: Path) -> None:
    store = RawStore(tmp_path, durable=False)
    _, html = save(store, "http://site.test/code/cpt4/1-x")
    _, txt = save(store, "http://site.test/code/cpt4/1-x", content=b"plain", content_type="text/plain")
    assert txt.suffix == ".txt" and txt.exists() and not html.exists()


def test_lookup_gives_conditional_headers_for_intact_pages(tmp_path: Path) -> None:
    store = RawStore(tmp_path, durable=False)
    url = "http://site.test/code/cpt4/1-x"
    save(store, url)
    stored = store.lookup(url, None)
    assert stored is not None and stored.intact()
    assert stored.conditional_headers() == {
        "If-None-Match": '"v1"',
        "If-Modified-Since": "Tue, 14 Nov 2023 22:13:20 GMT",
    }
    stored.path.write_bytes(b"changed by hand")
    assert not stored.intact()


def test_journal_resumes_an_unfinished_run_and_starts_afresh_after_a_finished_one(tmp_path: Path) -> None:
    path = CrawlState.default_path(tmp_path, "genhealth")
    assert path.parent.name.startswith(".")  # hidden: input discovery skips it
    s = CrawlState(path)
    assert s.open("job-a") is False
    s.record("http://a/1", "fetched", path="x/1.html", sha256="0" * 64)
    s.record("http://a/2", "failed")
    s.close()
    with path.open("a") as fh:
        fh.write('{"url": "http://a/3", "outc')  # a line torn by a kill

    s = CrawlState(path)
    assert s.open("job-a") is True
    assert s.stored("http://a/1") is not None and s.stored("http://a/2") is None
    assert s.stored("http://a/3") is None
    s.complete()
    s.close()

    s = CrawlState(path)
    assert s.open("job-a") is False and s.stored("http://a/1") is None
    s.close()
    s = CrawlState(path)
    assert s.open("another-job") is False
    s.close()


def test_journal_is_locked_while_a_crawl_runs(tmp_path: Path) -> None:
    path = CrawlState.default_path(tmp_path, "x")
    first = CrawlState(path)
    first.open("job")
    with pytest.raises(StateLocked):
        CrawlState(path).open("job")
    first.close()
    again = CrawlState(path)
    again.open("job")
    again.close()
