"""Files an app can serve as they are: ``json/<system>/<code>.json`` per record and ``json/index.json``."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from published_versions import corpus_version

from pipeline.publish import read_manifest
from pipeline.publish.extras import file_entry


def index_of(version: Path) -> list[dict[str, Any]]:
    return json.loads((version / "json" / "index.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def jsonl_lines(version: Path) -> list[bytes]:
    return [line for line in (version / "procedures.jsonl").read_bytes().splitlines() if line.strip()]


def test_each_record_file_is_its_line_of_procedures_jsonl(published: Path) -> None:
    version = published / "latest"
    lines = jsonl_lines(version)
    assert len(lines) == 3
    for line in lines:
        rec = json.loads(line)
        assert (version / "json" / rec["code_system"] / f"{rec['code']}.json").read_bytes() == line


def test_the_index_lists_code_system_title_and_path_in_record_order(published: Path) -> None:
    version = published / "latest"
    index = index_of(version)
    assert [(e["system"], e["code"]) for e in index] == [
        ("cpt", "29881"),
        ("cpt", "47562"),
        ("hcpcs", "E0114"),
    ]
    gallbladder = index[1]
    assert gallbladder["title"] == "Laparoscopic gallbladder removal"
    assert gallbladder["path"] == "cpt/47562.json"
    for entry in index:
        data = (version / "json" / entry["path"]).read_bytes()
        assert (entry["sha256"], entry["bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
    files = sorted(
        p.relative_to(version / "json").as_posix() for p in (version / "json").rglob("*") if p.is_file()
    )
    assert files == sorted(["index.json", *(e["path"] for e in index)])  # nothing else in json/


def test_the_manifest_hashes_the_index(published: Path) -> None:
    version = published / "latest"
    entry = read_manifest(version).files["json/index.json"]
    assert entry == file_entry(version / "json" / "index.json", 3, fsync=False)


def test_every_real_record_has_its_file(
    shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    version = corpus_version(shared_corpus, tmp_path_factory.getbasetemp()) / "latest"
    lines = jsonl_lines(version)
    index = index_of(version)
    assert [f"{e['system']}:{e['code']}" for e in index] == [json.loads(line)["record_id"] for line in lines]
    assert {e["path"] for e in index} >= {"hcpcs/A4253.json", "cpt/63185.json"}


@pytest.fixture
def served(published: Path) -> Iterator[str]:
    """The version's ``json/`` folder served as it is by a plain static file server on 127.0.0.1."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(published / "latest" / "json"))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_app_reads_the_index_and_every_record_from_a_static_server(served: str, published: Path) -> None:
    with httpx.Client(base_url=served, timeout=10) as client:
        resp = client.get("/index.json")
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        for entry in resp.json():
            rec = client.get("/" + entry["path"])
            assert rec.status_code == 200 and rec.headers["content-type"] == "application/json"
            body = rec.json()
            assert (body["code_system"], body["code"], body["title"]) == (
                entry["system"],
                entry["code"],
                entry["title"],
            )
            assert hashlib.sha256(rec.content).hexdigest() == entry["sha256"]


def test_the_streamed_index_has_the_layout_of_one_json_dump(published: Path, tmp_path: Path) -> None:
    """index.json is written entry by entry; its text is what one ``json.dumps(indent=1)`` gives."""
    text = (published / "latest" / "json" / "index.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=1) + "\n"
    # a title needing escapes, one not ASCII, one missing, and the empty index
    from pipeline.publish.appfiles import AppFilesSink

    titles = ['Knee "scope"\\ \n', "Résection", None]
    sink = AppFilesSink(tmp_path)
    for code, title in zip(("29881", "29882", "29883"), titles, strict=True):
        sink.add(b"{}", sink.digest(b"{}", {"code_system": "cpt", "code": code, "title": title}))
    sink.close()
    text = (tmp_path / "json" / "index.json").read_text(encoding="utf-8")
    assert [e["title"] for e in json.loads(text)] == titles
    assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=1) + "\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    AppFilesSink(empty).close()
    assert (empty / "json" / "index.json").read_text(encoding="utf-8") == "[]\n"
