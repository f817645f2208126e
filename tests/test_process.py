"""The batch worker: one result per input, never an exception; and the Prefect-free local run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pipeline.process as process
from pipeline.process import process_batch, run_local
from schemas import ProcedureRecord, Reject

PAGE = """Spinal Decompression
CPT4 code

Name of the Procedure:
Laminectomy (spinal decompression)

Summary
A surgeon removes part of a vertebra to take pressure off the spinal cord.

Risks and Complications
  • Bleeding
  • Infection
"""


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture
def parser_ready() -> None:
    """Skip until the text front end and build_record have landed (they are written in parallel)."""
    pytest.importorskip("pipeline.parse.text")
    normalize = pytest.importorskip("pipeline.normalize")
    if not hasattr(normalize, "build_record"):
        pytest.skip("pipeline.normalize.build_record not there yet")


def bad_inputs(raw: Path) -> list[str]:
    write(raw / "binary.txt", bytes(range(256)) * 20)
    write(raw / "empty.txt", b"")
    write(raw / "doc.pdf", b"%PDF-1.7\n")
    write(raw / "sub" / "broken.txt", PAGE)
    write(raw / "sub" / "broken.meta.json", "{oops")
    return ["binary.txt", "empty.txt", "doc.pdf", "sub/broken.txt", "missing.txt"]


def test_process_batch_turns_every_bad_input_into_one_reject(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    paths = bad_inputs(raw)
    results = process_batch(paths, str(raw))
    assert len(results) == len(paths)
    json.dumps(results)  # compact and JSON-able: results travel between processes
    rejects = [Reject.model_validate(r["reject"]) for r in results]
    assert [r.source for r in rejects] == paths
    by_source = {r.source: r for r in rejects}
    assert by_source["doc.pdf"].reason == "unsupported file type .pdf"
    assert by_source["sub/broken.txt"].reason.startswith("broken sidecar broken.meta.json: invalid JSON")
    assert by_source["missing.txt"].stage == "read" and "cannot read file" in by_source["missing.txt"].reason


def test_process_batch_accepts_absolute_paths_and_reports_them_relative(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    page = write(raw / "a" / "x.pdf", b"%PDF")
    (result,) = process_batch([str(page)], str(raw))
    assert result["reject"]["source"] == "a/x.pdf"


def test_unexpected_exception_becomes_an_internal_error_reject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    write(raw / "a.txt", PAGE)
    write(raw / "b.txt", PAGE)

    def explode(content: bytes, **kwargs: object) -> ProcedureRecord:
        raise ValueError("section\nvanished")

    monkeypatch.setattr(process, "parse_page", explode)
    results = process_batch(["a.txt", "b.txt"], str(raw))
    assert [r["reject"]["source"] for r in results] == ["a.txt", "b.txt"]
    reject = results[0]["reject"]
    assert reject["stage"] == "parse"
    assert reject["reason"] == "internal error: ValueError: section vanished"
    assert "explode" in reject["detail"]  # where it was raised, for whoever fixes it


def test_worker_module_imports_no_heavy_libraries() -> None:
    code = (
        "import sys, pipeline.process\n"
        "heavy = sorted(m for m in ('prefect', 'pandas', 'pyarrow') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_run_local_accounts_for_every_input_over_a_process_pool(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    paths = bad_inputs(raw)
    write(raw / ".hidden.txt", "skipped")
    manifest = run_local(raw, out, workers=2, batch_size=2, run_id="pool-run")
    discovered = sorted(p for p in paths if p != "missing.txt")
    assert manifest.counts.inputs == len(discovered)
    assert manifest.counts.rejects == len(discovered) and manifest.counts.records == 0
    lines = (out / "latest" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["source"] for line in lines) == discovered
    assert (out / "LATEST").read_text().strip() == "pool-run"


def test_garbage_bytes_are_decode_rejects(tmp_path: Path, parser_ready: None) -> None:
    raw = tmp_path / "raw"
    paths = bad_inputs(raw)
    by_source = {r["reject"]["source"]: r["reject"] for r in process_batch(paths, str(raw))}
    assert by_source["binary.txt"]["stage"] == "decode" and "binary" in by_source["binary.txt"]["reason"]
    assert by_source["empty.txt"]["reason"].startswith("empty page")


def test_sidecar_code_wins_over_path_and_page(tmp_path: Path, parser_ready: None) -> None:
    raw = tmp_path / "raw"
    write(raw / "site" / "cpt4" / "63185.txt", PAGE)
    write(raw / "site" / "cpt4" / "63185.meta.json", json.dumps({"code_system": "cpt", "code": "63190"}))
    (result,) = process_batch(["site/cpt4/63185.txt"], str(raw))
    assert "record" in result, result
    record = ProcedureRecord.model_validate(result["record"])
    assert (record.code_system, record.code) == ("cpt", "63190")
    assert record.source.path == "site/cpt4/63185.txt"


def test_run_local_publishes_records_from_real_pages(tmp_path: Path, parser_ready: None) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    for code in ("63185", "63190", "63191"):
        write(raw / "site" / "cpt4" / f"{code}.txt", PAGE)
    write(raw / "junk.pdf", b"%PDF")
    manifest = run_local(raw, out, workers=1)
    assert (manifest.counts.records, manifest.counts.rejects) == (3, 1)
    ids = [json.loads(x)["record_id"] for x in (out / "latest" / "procedures.jsonl").read_text().splitlines()]
    assert ids == ["cpt:63185", "cpt:63190", "cpt:63191"]


def crashing_batch(paths: list[str], raw_dir: str, stage: str | None = None) -> list[dict[str, object]]:
    """A worker that dies outright (as a segfault in a C extension would) on a page named crash*."""
    if any(Path(p).name.startswith("crash") for p in paths):
        os._exit(70)
    return process_batch(paths, raw_dir, stage)


def test_a_dying_worker_costs_only_its_own_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    names = [f"p{i}.pdf" for i in range(6)] + ["crash.pdf"]
    for name in names:
        write(raw / name, b"%PDF")
    monkeypatch.setattr(process, "process_batch", crashing_batch)
    batches = [[n] for n in sorted(names)]
    results = list(process.iter_results(batches, raw, workers=2))
    assert [r["reject"]["source"] for r in results] == sorted(names)  # one result per input, in order
    by_source = {r["reject"]["source"]: r["reject"]["reason"] for r in results}
    assert by_source["crash.pdf"].startswith("internal error: worker process failed: BrokenProcessPool")
    assert all(by_source[n] == "unsupported file type .pdf" for n in names if n != "crash.pdf")


def test_a_worker_writes_its_batch_file_and_returns_only_counts(tmp_path: Path) -> None:
    """``process_batch_to_file`` in a pool worker: the file reads back to what ``process_batch``
    returns, each record prepared for publishing (its line is the record's JSON, its app file
    staged beside the batch file); only the path and counts cross the process boundary."""
    from concurrent.futures import ProcessPoolExecutor

    raw = tmp_path / "raw"
    paths = bad_inputs(raw) + ["site/cpt4/63185.txt"]
    write(raw / "site" / "cpt4" / "63185.txt", PAGE)
    target = str(tmp_path / "batch.pickle")
    with ProcessPoolExecutor(max_workers=1, mp_context=process.pool_context()) as pool:
        spooled = pool.submit(process.process_batch_to_file, process_batch, paths, str(raw), target).result()
    expected = process_batch(paths, str(raw))
    assert spooled == {
        "path": target,
        "results": len(paths),
        "records": sum("record" in r for r in expected),
    }
    spooled_results = process.load_spool(target)
    assert [unprepared(r) for r in spooled_results] == expected
    assert list(process.read_spool([target, target])) == spooled_results + spooled_results
    (record,) = [r["prepared"] for r in spooled_results if "prepared" in r]
    staged = process.stage_folder(target) / "cpt" / "63185.json"
    assert staged.read_bytes() == record[0]  # written by the worker: its line


def unprepared(result: dict[str, Any]) -> dict[str, Any]:
    """A prepared result as the record result it was made from (its line, parsed)."""
    return {"record": json.loads(result["prepared"][0])} if "prepared" in result else result


def test_pool_workers_start_with_the_parser_imported() -> None:
    """The fork server preloads the worker module: a worker has the parser before its first batch."""
    code = (
        "import sys\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from pipeline.process import pool_context\n"
        "if __name__ == '__main__':\n"
        "    with ProcessPoolExecutor(1, mp_context=pool_context()) as pool:\n"
        "        print(pool.submit(eval, \"'pipeline.api' in __import__('sys').modules\").result())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
