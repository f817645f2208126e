"""Publish: version folders with every table, an honest manifest, dedupe, and an atomic ``latest``."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import pipeline.publish.writer as writer
from pipeline.publish import latest_version, publish, read_manifest, tables
from schemas import Manifest, ProcedureRecord

TABLES = {
    "procedures.parquet": tables.PROCEDURES_SCHEMA,
    "sections.parquet": tables.SECTIONS_SCHEMA,
    "items.parquet": tables.ITEMS_SCHEMA,
    "similar_codes.parquet": tables.SIMILAR_CODES_SCHEMA,
    "rejects.parquet": tables.REJECTS_SCHEMA,
    "duplicates.parquet": tables.DUPLICATES_SCHEMA,
}
JSONL = ("procedures.jsonl", "rejects.jsonl", "duplicates.jsonl")


def record(
    code: str,
    path: str | None = None,
    fetched_at: str | None = None,
    system: str = "cpt",
    title: str | None = None,
) -> dict[str, Any]:
    """A hand-made record result, as process_batch returns it."""
    path = path or f"site/{system}/{code}.txt"
    return {
        "record": {
            "record_id": f"{system}:{code}",
            "code_system": system,
            "code": code,
            "title": title or f"Procedure {code}",
            "procedure_name": "Knee arthroscopy",
            "common_names": ["knee scope"],
            "sections": [
                {"key": "summary", "heading": "Summary", "text": "A camera looks inside the knee."},
                {
                    "key": "risks",
                    "heading": "Risks and Complications",
                    "items": [
                        {"text": "Infection"},
                        {"text": "Bleeding", "label": "Common", "items": [{"text": "at the port sites"}]},
                    ],
                    "subsections": [{"heading": "Rare Risks:", "items": [{"text": "Blood clot"}]}],
                },
                {"key": "other", "heading": "Cost Notes", "text": "Varies."},
            ],
            "summary": "A camera looks inside the knee.",
            "risks": ["Infection", "Bleeding", "Blood clot"],
            "similar_codes": [{"code_system": "cpt", "code": "29880", "title": "Meniscectomy"}],
            "duration_minutes_min": 30,
            "duration_minutes_max": 60,
            "source": {
                "url": f"https://example.org/code/{system}/{code}",
                "path": path,
                "sha256": hashlib.sha256(path.encode()).hexdigest(),
                "fetched_at": fetched_at,
            },
            "parser_version": "test",
        }
    }


def reject(source: str, reason: str = "empty page (no text)") -> dict[str, Any]:
    return {"reject": {"source": source, "stage": "decode", "reason": reason}}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows_of(path: Path) -> int:
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return len(path.read_text(encoding="utf-8").splitlines())


def assert_intact(version: Path) -> Manifest:
    """Every file a manifest lists is there with the hash, size and row count it claims; the only
    files it does not list are the per-record app files, which json/index.json hashes."""
    manifest = read_manifest(version)
    assert set(TABLES) | set(JSONL) <= set(manifest.files)
    on_disk = {p.relative_to(version).as_posix() for p in version.rglob("*") if p.is_file()}
    listed = {*manifest.files, "manifest.json"}
    assert listed <= on_disk
    index = json.loads((version / "json" / "index.json").read_text(encoding="utf-8"))
    assert on_disk - listed == {f"json/{e['path']}" for e in index}
    for name, entry in manifest.files.items():
        path = version / name
        assert entry.sha256 == sha256_of(path), name
        assert entry.bytes == path.stat().st_size, name
        if path.suffix in (".parquet", ".jsonl"):
            assert entry.rows == rows_of(path), name
    for e in index:
        assert e["sha256"] == sha256_of(version / "json" / e["path"])
    return manifest


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "processed"


def test_publish_writes_every_file_and_an_honest_manifest(out: Path) -> None:
    results = [
        record("29881"),
        record("A4253", system="hcpcs"),
        reject("empty.txt"),
        record("29881", "z.txt"),
    ]
    manifest = publish(results, out, inputs=4, run_id="20261125T170000Z-abc123")
    version = out / "versions" / "20261125T170000Z-abc123"
    assert latest_version(out) == version.resolve()
    assert os.readlink(out / "latest") == os.path.join("versions", "20261125T170000Z-abc123")
    assert (out / "LATEST").read_text() == "20261125T170000Z-abc123\n"
    on_disk = assert_intact(out / "latest")
    assert on_disk == manifest
    c = manifest.counts
    assert (c.inputs, c.records, c.rejects, c.duplicates) == (4, 2, 1, 1)
    assert c.inputs == c.records + c.rejects + c.duplicates
    assert manifest.files["procedures.parquet"].rows == 2
    assert manifest.schema_version and manifest.parser_version and manifest.created_at.tzinfo
    assert not [p for p in (out / "versions").iterdir() if p.name.startswith(".")]


def test_tables_read_back_with_pyarrow_and_pandas_including_nested_columns(out: Path) -> None:
    publish([record("29881"), record("0529F"), record("0016T")], out, inputs=3)
    latest = out / "latest"
    for name, schema in TABLES.items():
        assert pq.read_schema(latest / name).remove_metadata() == schema, name

    df = pd.read_parquet(latest / "procedures.parquet")
    assert list(df["record_id"]) == ["cpt:0016T", "cpt:0529F", "cpt:29881"]  # sorted by record_id
    risks = df.loc[2, "sections"][1]
    assert risks["key"] == "risks"
    assert risks["items"][1]["label"] == "Common"
    assert risks["items"][1]["items"][0]["text"] == "at the port sites"
    assert risks["subsections"][0]["items"][0]["text"] == "Blood clot"
    assert list(df.loc[0, "common_names"]) == ["knee scope"]
    assert df.loc[0, "similar_codes"][0]["code"] == "29880"
    assert df.loc[0, "duration_minutes_max"] == 60

    lines = (latest / "procedures.jsonl").read_text(encoding="utf-8").splitlines()
    parsed = [ProcedureRecord.model_validate_json(line) for line in lines]
    assert [r.record_id for r in parsed] == list(df["record_id"])
    assert set(json.loads(lines[0])) == set(df.columns)  # the same fields in both files


def test_sections_items_and_similar_codes_are_keyed_child_tables(out: Path) -> None:
    publish([record("29881")], out, inputs=1)
    latest = out / "latest"
    sections = pd.read_parquet(latest / "sections.parquet")
    assert list(sections["key"]) == ["summary", "risks", "other"]
    assert list(sections["position"]) == [0, 1, 2]
    assert sections.loc[2, "heading"] == "Cost Notes"
    assert list(sections["n_items"]) == [0, 4, 0]  # nested and subsection items count too
    assert list(sections["n_subsections"]) == [0, 1, 0]

    items = pq.read_table(latest / "items.parquet").to_pylist()
    slim = [
        (i["position"], i["depth"], i["parent_position"], i["subsection"], i["label"], i["text"])
        for i in items
    ]
    assert slim == [
        (0, 0, None, None, None, "Infection"),
        (1, 0, None, None, "Common", "Bleeding"),
        (2, 1, 1, None, None, "at the port sites"),
        (3, 0, None, "Rare Risks:", None, "Blood clot"),
    ]
    assert {(i["record_id"], i["section_position"], i["section_key"]) for i in items} == {
        ("cpt:29881", 1, "risks")
    }

    similar = pq.read_table(latest / "similar_codes.parquet").to_pylist()
    assert similar == [
        {
            "record_id": "cpt:29881",
            "code_system": "cpt",
            "code": "29881",
            "similar_code_system": "cpt",
            "similar_code": "29880",
            "title": "Meniscectomy",
            "url": None,
        }
    ]


@pytest.mark.parametrize(("per_chunk", "chunk_bytes", "groups"), [(2, 1 << 30, 3), (1000, 1, 5)])
def test_records_are_written_in_row_groups_without_loss_at_the_seams(
    out: Path, monkeypatch: pytest.MonkeyPatch, per_chunk: int, chunk_bytes: int, groups: int
) -> None:
    monkeypatch.setattr(writer, "RECORDS_PER_CHUNK", per_chunk)
    monkeypatch.setattr(writer, "CHUNK_BYTES", chunk_bytes)
    codes = ["29881", "29882", "29883", "29884", "29885"]
    publish([record(c) for c in reversed(codes)], out, inputs=5)
    procedures = pq.ParquetFile(out / "latest" / "procedures.parquet")
    assert procedures.metadata.num_row_groups == groups
    assert procedures.read().column("code").to_pylist() == codes
    items = pq.read_table(out / "latest" / "items.parquet")
    assert items.column("code").to_pylist() == [c for c in codes for _ in range(4)]


def test_items_deeper_than_the_parquet_nesting_are_kept(out: Path) -> None:
    deep: dict[str, Any] = {"text": "level 9"}
    for level in range(8, 0, -1):
        deep = {"text": f"level {level}", "items": [deep]}
    result = record("29881")
    result["record"]["sections"][1]["items"] = [deep]
    publish([result], out, inputs=1)
    items = pd.read_parquet(out / "latest" / "items.parquet")
    items = items[items["subsection"].isna()]
    assert list(items["depth"]) == list(range(9))
    nested = pq.read_table(out / "latest" / "procedures.parquet").to_pylist()[0]["sections"][1]["items"]
    texts, level = [], nested
    while level:
        texts += [i["text"] for i in level]
        level = [c for i in level for c in i.get("items", [])]
    assert texts == [f"level {n}" for n in range(1, 10)]  # flattened below level 5, never dropped
    line = (out / "latest" / "procedures.jsonl").read_text()
    assert ProcedureRecord.model_validate_json(line).sections[1].items[0].items[0].text == "level 2"


def test_dedupe_newest_fetched_at_wins_whatever_the_order(out: Path) -> None:
    pages = [
        record("29881", "a/old.txt", "2026-01-01T00:00:00Z", title="old"),
        record("29881", "z/undated.txt", None, title="undated"),
        record("29881", "m/new.txt", "2026-03-01T00:00:00+00:00", title="new"),
        record("29881", "b/naive.txt", "2026-02-01T00:00:00", title="naive means UTC"),
    ]
    for run in range(3):
        random.Random(run).shuffle(pages)
        manifest = publish(pages, out, inputs=4)
        assert manifest.counts.duplicates == 3 and manifest.counts.records == 1
        (line,) = (out / "latest" / "procedures.jsonl").read_text().splitlines()
        assert json.loads(line)["title"] == "new"
        folded = [json.loads(x) for x in (out / "latest" / "duplicates.jsonl").read_text().splitlines()]
        assert [(d["source"], d["kept"]) for d in folded] == [
            ("a/old.txt", "m/new.txt"),
            ("b/naive.txt", "m/new.txt"),
            ("z/undated.txt", "m/new.txt"),
        ]
    assert len(pd.read_parquet(out / "latest" / "duplicates.parquet")) == 3


def test_dedupe_without_fetched_at_keeps_the_last_path(out: Path) -> None:
    pages = [
        record("29881", "b/x.txt", title="b"),
        record("29881", "c/x.txt", title="c"),
        record("29881", "a.txt"),
    ]
    publish(pages, out, inputs=3)
    (line,) = (out / "latest" / "procedures.jsonl").read_text().splitlines()
    assert json.loads(line)["title"] == "c"


def test_empty_input_publishes_valid_empty_tables(out: Path) -> None:
    manifest = publish([], out, inputs=0)
    assert manifest.counts.model_dump() == {"inputs": 0, "records": 0, "rejects": 0, "duplicates": 0}
    assert_intact(out / "latest")
    for name, schema in TABLES.items():
        df = pd.read_parquet(out / "latest" / name)
        assert len(df) == 0 and list(df.columns) == schema.names, name
    assert (out / "latest" / "procedures.jsonl").read_bytes() == b""


def test_invalid_record_becomes_a_validate_reject(out: Path) -> None:
    bad = record("2988")  # not a valid CPT code
    manifest = publish([bad, record("29881")], out, inputs=2)
    assert (manifest.counts.records, manifest.counts.rejects) == (1, 1)
    (rej,) = pd.read_parquet(out / "latest" / "rejects.parquet").to_dict("records")
    assert rej["stage"] == "validate" and rej["source"] == "site/cpt/2988.txt"
    assert rej["reason"].startswith("invalid record (")


def test_results_that_do_not_add_up_publish_nothing(out: Path) -> None:
    publish([record("29881")], out, inputs=1, run_id="first")
    with pytest.raises(ValueError, match="2 results for 3 inputs"):
        publish([record("29881"), reject("x.txt")], out, inputs=3, run_id="second")
    with pytest.raises(ValueError, match="neither"):
        publish([{"oops": 1}], out, inputs=1, run_id="third")
    assert sorted(p.name for p in (out / "versions").iterdir()) == ["first"]
    assert latest_version(out) == (out / "versions" / "first").resolve()


def test_run_id_must_be_new_and_safe(out: Path) -> None:
    publish([], out, inputs=0, run_id="r1")
    with pytest.raises(FileExistsError):
        publish([], out, inputs=0, run_id="r1")
    with pytest.raises(ValueError, match="bad run id"):
        publish([], out, inputs=0, run_id="../escape")


def test_default_run_id_is_a_sortable_timestamp(out: Path) -> None:
    manifest = publish([], out, inputs=0)
    stamp, tail = manifest.run_id.split("-")
    assert stamp == manifest.created_at.strftime("%Y%m%dT%H%M%SZ")
    assert len(tail) == 6 and int(tail, 16) >= 0


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise OSError("disk full (injected)")


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (sub-folders included) by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "where",
    ["chunk_tables", "second_chunk", "rejects_table", "version_rename", "latest_switch", "latest_file"],
)
def test_failure_mid_publish_leaves_previous_version_current_and_intact(
    out: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    publish([record("29881"), reject("e.txt")], out, inputs=2, run_id="v1")
    before = _snapshot(out / "versions" / "v1")

    if where == "chunk_tables":
        monkeypatch.setattr(tables, "chunk_tables", _fail)
    elif where == "second_chunk":
        monkeypatch.setattr(writer, "RECORDS_PER_CHUNK", 1)
        real, calls = tables.chunk_tables, []

        def once(lines: list[bytes]) -> tables.Chunk:
            calls.append(lines)
            if len(calls) > 1:
                raise OSError("disk full (injected)")
            return real(lines)

        monkeypatch.setattr(tables, "chunk_tables", once)
    elif where == "rejects_table":
        monkeypatch.setattr(writer, "_write_pair", _fail)
    elif where == "version_rename":
        monkeypatch.setattr(writer.os, "rename", _fail)
    else:
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if Path(dst).name == ("latest" if where == "latest_switch" else "LATEST"):
                raise OSError("disk full (injected)")
            real_replace(src, dst)

        monkeypatch.setattr(writer.os, "replace", replace)

    with pytest.raises(OSError, match="injected"):
        publish([record("29881"), record("29882"), record("29883")], out, inputs=3, run_id="v2")
    monkeypatch.undo()

    if where != "latest_file":
        assert latest_version(out) == (out / "versions" / "v1").resolve()
        assert (out / "LATEST").read_text().strip() == "v1"
    assert os.readlink(out / "latest") == os.path.join("versions", "v1" if where != "latest_file" else "v2")
    assert _snapshot(out / "versions" / "v1") == before
    assert_intact(out / "versions" / "v1")
    # the out-dir lock file (flock) stays by design; temporaries must not
    leftovers = [
        p.name
        for p in [*out.iterdir(), *(out / "versions").iterdir()]
        if p.name.startswith(".") and p.name != ".lock"
    ]
    assert leftovers == []
    # a failure before the rename never leaves a half-written version behind
    if where in ("chunk_tables", "second_chunk", "rejects_table", "version_rename"):
        assert not (out / "versions" / "v2").exists()
    publish([record("29884")], out, inputs=1, run_id="v3")
    assert latest_version(out) == (out / "versions" / "v3").resolve()


def test_hard_crash_while_writing_leaves_previous_version_current(out: Path) -> None:
    publish([record("29881")], out, inputs=1, run_id="v1")
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_publish import record
        from pipeline.publish import publish

        def results():
            yield record("29882")
            yield record("29883")
            os._exit(9)  # killed in the middle of a publish

        publish(results(), {str(out)!r}, inputs=3, run_id="v2")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert latest_version(out) == (out / "versions" / "v1").resolve()
    assert (out / "LATEST").read_text().strip() == "v1"
    assert_intact(out / "latest")
    assert (out / "versions" / ".tmp-v2").is_dir()  # debris of the killed run, never mistaken for a version
    assert not (out / "versions" / "v2").exists()
    publish([record("29884")], out, inputs=1, run_id="v2")  # the same run id can be retried
    assert latest_version(out) == (out / "versions" / "v2").resolve()
    assert_intact(out / "latest")
