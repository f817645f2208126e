"""Raw input: discovery under raw/, reading a page with its sidecar, and the read-stage rejects."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipeline.errors import RejectedPage
from pipeline.sources.files import MAX_PAGE_BYTES_ENV, RawPage, discover, read_page


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_discover_walks_subfolders_sorted_and_skips_sidecars_and_hidden(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "site" / "cpt" / "63185.txt", "page")
    write(raw / "site" / "cpt" / "63185.meta.json", "{}")
    write(raw / "b.html", "<p>x</p>")
    write(raw / "a.md", "# x")
    write(raw / "deep" / "er" / "c.htm", "<p>x</p>")
    write(raw / ".hidden.txt", "x")
    write(raw / ".git" / "page.txt", "x")
    write(raw / "orphan.meta.json", "{}")
    assert rel(discover(raw), raw) == ["a.md", "b.html", "deep/er/c.htm", "site/cpt/63185.txt"]


def test_discover_lists_unsupported_files_so_they_become_rejects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "x.pdf", b"%PDF-1.4 binary")
    write(raw / "notes", "no extension")
    write(raw / "p.txt", "page")
    found = discover(raw)
    assert rel(found, raw) == ["notes", "p.txt", "x.pdf"]
    with pytest.raises(RejectedPage, match=r"^unsupported file type \.pdf$") as exc:
        read_page(raw / "x.pdf", raw)
    assert exc.value.stage == "read"
    with pytest.raises(RejectedPage, match=r"unsupported file type \(no extension\)"):
        read_page(raw / "notes", raw)


def test_discover_never_follows_symlinks_out_of_raw(tmp_path: Path) -> None:
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    write(outside / "secret.txt", "not an input")
    write(raw / "in.txt", "page")
    os.symlink(outside, raw / "linked_dir", target_is_directory=True)
    os.symlink(outside / "secret.txt", raw / "escape.txt")
    os.symlink(raw / "in.txt", raw / "alias.txt")
    found = rel(discover(raw), raw)
    assert found == ["alias.txt", "escape.txt", "in.txt"]  # the linked folder is not walked
    with pytest.raises(RejectedPage, match="symbolic link leads outside the raw folder"):
        read_page(raw / "escape.txt", raw)
    assert read_page(raw / "alias.txt", raw).content == b"page"


def test_read_page_gives_relative_posix_path_bytes_and_sidecar_fields(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    body = b"Laminectomy\nCPT4 code\n"
    page = write(raw / "genhealth" / "cpt4" / "63185.txt", body)
    sidecar = {
        "url": "https://example.org/code/cpt4/63185",
        "code_system": "cpt",
        "code": "63185",
        "fetched_at": "2026-11-01T10:00:00Z",
        "status": 200,
        "sha256": hashlib.sha256(body).hexdigest(),
        "crawler_note": "unknown keys are ignored",
    }
    write(raw / "genhealth" / "cpt4" / "63185.meta.json", json.dumps(sidecar))
    got = read_page(page, raw)
    assert isinstance(got, RawPage)
    assert got.path == "genhealth/cpt4/63185.txt"
    assert got.content == body
    assert got.meta["url"] == sidecar["url"]
    assert (got.meta["code_system"], got.meta["code"], got.meta["status"]) == ("cpt", "63185", 200)
    assert got.meta["fetched_at"].startswith("2026-11-01T10:00:00")
    assert "crawler_note" not in got.meta
    json.dumps(got.meta)  # JSON-able, so it can travel to and from worker processes


def test_sidecar_fetched_at_may_be_a_day(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    page = write(raw / "a.md", "# Title")
    write(raw / "a.meta.json", '{"fetched_at": "2025-09-12"}')
    assert read_page(page, raw).meta["fetched_at"] == "2025-09-12T00:00:00Z"


def test_page_without_sidecar_has_empty_meta(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    page = write(raw / "a.md", "# Title")
    assert read_page(page, raw).meta == {}


@pytest.mark.parametrize(
    ("sidecar", "what"),
    [
        ("{not json", "invalid JSON"),
        ('["a", "list"]', "not a JSON object"),
        ('{"status": "200"}', "status"),
        ('{"code": 63185}', "code"),
        ('{"fetched_at": "last tuesday"}', "fetched_at"),
        ('{"sha256": "abc"}', "sha256"),
        ("", "invalid JSON"),
    ],
)
def test_broken_sidecar_is_a_read_reject_naming_the_file(tmp_path: Path, sidecar: str, what: str) -> None:
    raw = tmp_path / "raw"
    page = write(raw / "x" / "A4253.html", "<h1>x</h1>")
    write(raw / "x" / "A4253.meta.json", sidecar)
    with pytest.raises(RejectedPage) as exc:
        read_page(page, raw)
    assert exc.value.stage == "read"
    assert exc.value.reason.startswith("broken sidecar A4253.meta.json: ")
    assert what in exc.value.reason
    assert "\n" not in exc.value.reason


def test_oversize_page_is_rejected_with_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    page = write(raw / "big.txt", b"x" * 100)
    with pytest.raises(RejectedPage, match=r"^page too large \(100 bytes > 64\)$") as exc:
        read_page(page, raw, max_bytes=64)
    assert exc.value.stage == "read"
    monkeypatch.setenv(MAX_PAGE_BYTES_ENV, "99")
    with pytest.raises(RejectedPage, match="page too large"):
        read_page(page, raw)
    monkeypatch.setenv(MAX_PAGE_BYTES_ENV, "100")
    assert len(read_page(page, raw).content) == 100


def test_sidecar_sha256_mismatch_means_corrupt_raw_store(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    page = write(raw / "p.txt", b"changed after fetching")
    write(raw / "p.meta.json", json.dumps({"sha256": hashlib.sha256(b"as fetched").hexdigest()}))
    with pytest.raises(RejectedPage, match="does not match the sidecar's sha256") as exc:
        read_page(page, raw)
    assert exc.value.stage == "read"
    assert exc.value.detail and hashlib.sha256(b"changed after fetching").hexdigest() in exc.value.detail


def test_missing_file_and_path_outside_raw_are_read_rejects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(RejectedPage, match="cannot read file"):
        read_page(raw / "gone.txt", raw)
    other = write(tmp_path / "elsewhere.txt", "x")
    with pytest.raises(RejectedPage, match="not under the raw folder"):
        read_page(other, raw)


def test_special_files_are_never_opened(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    os.mkfifo(raw / "pipe.txt")  # reading it would block forever
    os.symlink(raw / "pipe.txt", raw / "link.txt")
    assert rel(discover(raw), raw) == ["link.txt"]  # a link is listed, so that it is accounted for
    with pytest.raises(RejectedPage, match="not a regular file"):
        read_page(raw / "link.txt", raw)


def test_paths_through_linked_folders_are_judged_by_where_they_lead(tmp_path: Path) -> None:
    """A folder link inside raw/ is followed only when it stays inside; the sidecar beside the page too."""
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    write(outside / "secret.txt", "not an input")
    write(outside / "secret.meta.json", json.dumps({"code": "99999"}))
    write(raw / "sub" / "deep" / "p.txt", "page")
    write(raw / "sub" / "deep" / "p.meta.json", json.dumps({"code": "63185"}))
    os.symlink(outside, raw / "out_dir", target_is_directory=True)
    os.symlink(raw / "sub", raw / "in_dir", target_is_directory=True)
    with pytest.raises(RejectedPage, match="symbolic link leads outside the raw folder"):
        read_page(raw / "out_dir" / "secret.txt", raw)
    got = read_page(raw / "in_dir" / "deep" / "p.txt", raw)
    assert (got.path, got.content, got.meta) == ("in_dir/deep/p.txt", b"page", {"code": "63185"})
    assert read_page(raw / "sub" / "deep" / "p.txt", raw).meta == {"code": "63185"}
    # "..": judged by where the path really leads (raw/out_dir/.. is tmp_path), not by how it reads
    write(tmp_path / "x.txt", "beside raw/")
    with pytest.raises(RejectedPage, match="symbolic link leads outside the raw folder"):
        read_page(raw / "out_dir" / ".." / "x.txt", raw)


def test_a_sidecar_that_is_a_link_inside_raw_is_read_and_one_that_is_a_folder_is_none(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "a.txt", "page")
    write(raw / "meta" / "shared.json", json.dumps({"code_system": "cpt"}))
    os.symlink(raw / "meta" / "shared.json", raw / "a.meta.json")
    assert read_page(raw / "a.txt", raw).meta == {"code_system": "cpt"}
    write(raw / "b.txt", "page")
    (raw / "b.meta.json").mkdir()
    assert read_page(raw / "b.txt", raw).meta == {}


def test_the_sidecar_sha256_is_computed_once_per_page_read_and_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_page checks the sidecar's digest; parse_page reuses it for the record instead of hashing again."""
    from pipeline.api import parse_page
    from pipeline.sources import files

    raw = tmp_path / "raw"
    body = b"Spinal decompression\n\nCPT4 code\n\nSummary\n\nThe surgeon removes bone.\n"
    digest = hashlib.sha256(body).hexdigest()
    write(raw / "cpt" / "63185.txt", body)
    meta = {"sha256": digest, "code_system": "cpt", "code": "63185"}
    write(raw / "cpt" / "63185.meta.json", json.dumps(meta))
    calls: list[bytes] = []
    real = hashlib.sha256

    def counting(data: bytes = b"") -> object:
        calls.append(bytes(data))
        return real(data)

    monkeypatch.setattr(files.hashlib, "sha256", counting)
    page = read_page(raw / "cpt" / "63185.txt", raw)
    record = parse_page(page.content, path=page.path, meta=page.meta)
    assert record.source.sha256 == digest
    assert [c for c in calls if c == body] == [body]
    other = body + b"\nChanged.\n"  # other bytes are hashed, never given the remembered digest
    assert parse_page(other, path=page.path, meta=page.meta).source.sha256 == real(other).hexdigest()
