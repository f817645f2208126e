"""Versions: keep the last N (never ``latest``), list them, verify one against its manifest, and clean
up what dead runs leave; the ``versions`` and ``verify`` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_incremental import code_of, make_raw, page

from pipeline.incremental import run
from pipeline.publish import publish, switch_latest
from pipeline.publish.versions import clean_leftovers, list_versions, prune, verify
from schemas import Manifest


def procpipe(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pipeline", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def three_versions(tmp_path: Path) -> Path:
    """An out folder with three versions: 4 pages; one page changed; one page added."""
    raw, out = make_raw(tmp_path / "raw", 4, bad=1), tmp_path / "out"
    run(raw, out, workers=1)
    (raw / "site" / "cpt" / f"{code_of(1)}.md").write_text(page(code_of(1), 1, summary="Changed."), "utf-8")
    run(raw, out, workers=1)
    (raw / "site" / "cpt" / f"{code_of(7)}.md").write_text(page(code_of(7), 7), encoding="utf-8")
    run(raw, out, workers=1)
    return out


def test_versions_are_listed_oldest_first_with_counts_and_changes(three_versions: Path) -> None:
    found = list_versions(three_versions)
    assert len(found) == 3 and [v.latest for v in found] == [False, False, True]
    assert [v.manifest.changes for v in found] == [
        {"added": 4, "removed": 0, "changed": 0, "unchanged": 0},
        {"added": 0, "removed": 0, "changed": 1, "unchanged": 3},
        {"added": 1, "removed": 0, "changed": 0, "unchanged": 4},
    ]
    assert [v.manifest.previous_run_id for v in found] == [None, found[0].run_id, found[1].run_id]

    proc = procpipe("versions", "--out-dir", three_versions)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and "records" in lines[0]
    assert found[1].run_id in lines[2] and "+0 ~1 -0" in lines[2]
    assert lines[3].endswith("latest") and "+1 ~0 -0" in lines[3]
    rows = json.loads(procpipe("versions", "--out-dir", three_versions, "--json").stdout)
    assert [r["run_id"] for r in rows] == [v.run_id for v in found]
    assert rows[2]["counts"]["records"] == 5 and rows[2]["latest"] is True


def test_keep_n_prunes_the_oldest_but_never_latest(three_versions: Path, tmp_path: Path) -> None:
    found = [v.run_id for v in list_versions(three_versions)]
    switch_latest(three_versions, found[0])  # e.g. an operator rolled back to the oldest
    removed = prune(three_versions, keep=1)
    assert removed == [found[1]]  # the newest stays (keep 1) and so does latest, though old
    assert sorted(p.name for p in (three_versions / "versions").iterdir()) == sorted([found[0], found[2]])
    switch_latest(three_versions, found[2])
    m = publish([], three_versions, inputs=0, keep=2)
    assert [v.run_id for v in list_versions(three_versions)] == [found[2], m.run_id]
    assert not [p for p in (three_versions / "versions").iterdir() if p.name.startswith(".")]


def test_default_keep_is_ten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ids = [publish([], out, inputs=0, run_id=f"r{i:02d}").run_id for i in range(12)]
    assert [v.run_id for v in list_versions(out)] == ids[2:]


def test_verify_names_each_file_that_differs(three_versions: Path) -> None:
    latest = three_versions / "latest"
    proc = procpipe("verify", "--out-dir", three_versions)
    assert proc.returncode == 0 and proc.stdout.startswith("ok ")
    assert procpipe("verify", "--out-dir", three_versions, "--all").stdout.count("ok ") == 3

    # break a copy: version files are shared by hard links with versions of unchanged inputs
    version = three_versions / "versions" / latest.resolve().name
    for name in ("procedures.parquet", "rejects.jsonl", "items.parquet"):
        data = (version / name).read_bytes()
        (version / name).unlink()
        (version / name).write_bytes(data)
    blob = bytearray((version / "procedures.parquet").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (version / "procedures.parquet").write_bytes(bytes(blob))
    with (version / "rejects.jsonl").open("ab") as fh:
        fh.write(b"{}\n")
    (version / "items.parquet").unlink()
    (version / "stray.txt").write_text("left here by hand", encoding="utf-8")

    problems = verify(version)
    assert any(p.startswith("procedures.parquet: sha256") for p in problems)
    assert any(p.startswith("rejects.jsonl: ") and "bytes" in p for p in problems)
    assert "items.parquet: missing" in problems
    assert "stray.txt: not listed in the manifest" in problems
    proc = procpipe("verify", version.name, "--out-dir", three_versions)
    assert proc.returncode == 1
    for name in ("procedures.parquet", "rejects.jsonl", "items.parquet", "stray.txt"):
        assert name in proc.stderr
    assert proc.stdout.startswith(f"FAILED {version.name}")
    assert procpipe("verify", "--out-dir", three_versions, "--all").returncode == 1


def test_verify_checks_row_counts_and_the_app_files(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 3), tmp_path / "out"
    m = run(raw, out, workers=1)
    version = out / "versions" / m.run_id
    assert verify(version) == []
    data = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    data["files"]["sections.parquet"]["rows"] += 1
    (version / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    assert verify(version) == [f"sections.parquet: {data['files']['sections.parquet']['rows'] - 1} rows, "
                               f"manifest says {data['files']['sections.parquet']['rows']}"]  # fmt: skip
    if "json/index.json" in m.files:  # the app files are checked through their own index
        index = json.loads((version / "json" / "index.json").read_text(encoding="utf-8"))
        one = version / "json" / index[0]["path"]
        one.write_text(one.read_text(encoding="utf-8") + " ", encoding="utf-8")
        assert any(str(index[0]["path"]) in p for p in verify(version))


def test_verify_usage_errors(tmp_path: Path) -> None:
    assert procpipe("verify", "--out-dir", tmp_path).returncode == 2
    assert procpipe("verify", "nope", "--out-dir", tmp_path).returncode == 2


def test_leftovers_of_dead_runs_are_removed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish([], out, inputs=0, run_id="v1")
    (out / "versions" / ".tmp-v2").mkdir()
    (out / "versions" / ".tmp-v2" / "procedures.parquet").write_bytes(b"half")
    (out / "versions" / ".del-v0").mkdir()
    os.symlink("versions/v1", out / ".latest.v2.tmp")
    (out / ".LATEST.v2.tmp").write_text("v2", encoding="utf-8")
    (out / ".lock").write_text(json.dumps({"run_id": "v2", "pid": 999999, "host": "gone"}), encoding="utf-8")
    assert [v.run_id for v in list_versions(out)] == ["v1"]  # debris is never taken for a version
    m = publish([], out, inputs=0, run_id="v3")
    assert Manifest.model_validate_json((out / "latest" / "manifest.json").read_bytes()) == m
    hidden = sorted(p.name for p in [*out.iterdir(), *(out / "versions").iterdir()] if p.name.startswith("."))
    assert hidden == [".lock"]
    assert clean_leftovers(out) == []
