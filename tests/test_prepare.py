"""Publishing work done in the workers: records prepared next to parsing (validated, dumped, digested,
app files staged) and chunk tables built in worker processes give exactly what publish gives alone."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import pipeline.publish.writer as writer
from pipeline.incremental import run
from pipeline.process import iter_results, staging_folder
from pipeline.publish import publish
from pipeline.publish.appfiles import AppFilesSink
from pipeline.publish.prepare import prepare_record
from schemas import ProcedureRecord
from tests.test_incremental import make_raw, page
from tests.test_publish import record

TABLES = ("procedures.parquet", "sections.parquet", "items.parquet", "similar_codes.parquet")


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def app_files(version: Path) -> dict[str, Any]:
    """The app files of a version: index entries, and each record file parsed (run fields dropped)."""
    out: dict[str, Any] = {"index": json.loads((version / "json" / "index.json").read_text())}
    for rel, data in tree(version / "json").items():
        if rel != "index.json":
            rec = json.loads(data)
            rec["source"].pop("fetched_at", None)
            out[rel] = rec
    return out


def test_a_prepared_record_is_the_line_publish_writes(tmp_path: Path) -> None:
    data = ProcedureRecord.model_validate(record("29881")["record"]).model_dump()  # as a worker has it
    prepared = prepare_record(data, tmp_path / "stage")["prepared"]
    publish([record("29881")], tmp_path / "out", inputs=1)
    line = (tmp_path / "out" / "latest" / "procedures.jsonl").read_bytes().rstrip(b"\n")
    assert prepared[0] == line
    assert prepared[1:3] == ("cpt:29881", "site/cpt/29881.txt")
    assert (tmp_path / "stage" / "cpt" / "29881.json").read_bytes() == line  # its app file, staged


def test_an_invalid_record_is_rejected_in_the_worker_as_publish_would(tmp_path: Path) -> None:
    bad = record("29881")["record"]
    bad["code_system"] = "nope"
    (result,) = [prepare_record(bad, tmp_path / "stage")]
    publish([{"record": bad}], tmp_path / "out", inputs=1)
    reject = json.loads((tmp_path / "out" / "latest" / "rejects.jsonl").read_text())
    assert result == {"reject": reject}
    assert reject["stage"] == "validate" and "unknown code system" in reject["reason"]
    assert not (tmp_path / "stage").exists()


@pytest.mark.parametrize("newest_first", [True, False])
def test_the_newest_page_of_a_code_owns_its_app_file_whichever_worker_wrote_first(
    tmp_path: Path, newest_first: bool
) -> None:
    """Pages of one code in batches of their own on two workers: every worker tries to stage the
    code's file, one wins the race, and publish makes it the newest page's."""
    raw = make_raw(tmp_path / "raw", 3)
    dates = ["2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-02-01T00:00:00Z"]
    if not newest_first:
        dates.reverse()
    for i, when in enumerate(dates):
        (raw / f"copy{i}").mkdir()
        (raw / f"copy{i}" / "10000.md").write_text(page("10000", 10 + i), encoding="utf-8")
        meta = {"code_system": "cpt", "code": "10000", "fetched_at": when}
        (raw / f"copy{i}" / "10000.meta.json").write_text(json.dumps(meta), encoding="utf-8")
    paths = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.md"))
    batches = [[p] for p in paths]
    with staging_folder() as stage:
        results = iter_results(batches, raw, workers=2, stage=stage)
        staged = publish(results, tmp_path / "a", inputs=len(paths))
    plain = publish(iter_results(batches, raw, workers=1), tmp_path / "b", inputs=len(paths))
    assert staged.counts == plain.counts and staged.counts.duplicates == 3
    a, b = tmp_path / "a" / "latest", tmp_path / "b" / "latest"
    assert app_files(a) == app_files(b)
    newest = json.loads((a / "json" / "cpt" / "10000.json").read_text())
    assert newest["source"]["path"] == f"copy{dates.index('2026-03-01T00:00:00Z')}/10000.md"
    assert (a / "json" / "cpt" / "10000.json").read_bytes() in (a / "procedures.jsonl").read_bytes()


def test_an_incremental_run_merges_staged_files_with_the_reused_ones(tmp_path: Path) -> None:
    """Reused records have their files written by publish, changed ones staged by the workers, into
    the same code-system folder: the result is the app files of a full run."""
    raw, out = make_raw(tmp_path / "raw", 6), tmp_path / "out"
    run(raw, out, workers=2, batch_size=2)
    changed = raw / "site" / "cpt" / "10002.md"
    changed.write_text(page("10002", 2, summary="A different summary of the same needle sampling."))
    second = run(raw, out, workers=2, batch_size=2)
    assert second.reused == 5
    full = run(raw, tmp_path / "full", workers=2, batch_size=2, full=True)
    assert full.reused is None or full.reused == 0
    assert app_files(out / "latest") == app_files(tmp_path / "full" / "latest")
    assert b"different summary" in (out / "latest" / "json" / "cpt" / "10002.json").read_bytes()


def test_a_staged_file_of_a_replaced_winner_is_rewritten(tmp_path: Path) -> None:
    """The sink on its own: a staged digest later beaten by a page publish wrote itself."""
    stage = tmp_path / "stage"
    folder = tmp_path / "version"
    folder.mkdir()
    old, new = b'{"v": "old"}', b'{"v": "new"}'
    sink = AppFilesSink(folder)
    rec = {"code_system": "cpt", "code": "10000", "title": "T"}
    from pipeline.publish.appfiles import prepare

    first = sink.take(prepare(old, rec, stage))  # staged by a worker
    second = sink.digest(new, rec)  # a later winner, written by publish
    assert first[-1] is True
    sink.add(new, second)
    sink.close()
    assert (folder / "json" / "cpt" / "10000.json").read_bytes() == new
    assert not any(stage.rglob("*.json"))  # moved in


@pytest.mark.parametrize(("piece", "pieces"), [(250, [2, 2, 2, 2, 1]), (1, [1] * 9)])
def test_chunk_tables_built_in_worker_processes_equal_those_built_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int, pieces: list[int]
) -> None:
    """Chunks of 2 records built by the workers, whole or in pieces of one record joined again: the
    same tables, one row group per chunk."""
    results = [record(f"{29870 + i}") for i in range(9)]
    monkeypatch.setattr(writer, "RECORDS_PER_CHUNK", 2)
    publish(results, tmp_path / "here", inputs=len(results))
    submitted: list[int] = []

    class CountingPool(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(writer, "POOL_MIN_RECORDS", 1)
    monkeypatch.setattr(writer._ChunkBuilder, "PIECE", piece)
    monkeypatch.setattr(writer, "ProcessPoolExecutor", CountingPool)
    publish(results, tmp_path / "pool", inputs=len(results))
    assert submitted == pieces  # every record's rows were built by a worker process
    for name in TABLES:
        a = pq.ParquetFile(tmp_path / "here" / "latest" / name)
        b = pq.ParquetFile(tmp_path / "pool" / "latest" / name)
        assert a.metadata.num_row_groups == b.metadata.num_row_groups == 5
        assert a.read().equals(b.read()), name


def test_staged_files_are_copied_when_the_version_is_on_another_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staging folder on another file system than the output (``os.replace`` fails with EXDEV):
    the files are copied over instead, and the staging folder is emptied."""
    import errno

    import pipeline.publish.appfiles as appfiles

    real_replace = os.replace

    def cross_device(src: Any, dst: Any) -> None:
        if "procpipe-stage-" in str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(appfiles.os, "replace", cross_device)
    raw = make_raw(tmp_path / "raw", 4)
    paths = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.md"))
    with staging_folder() as stage:
        publish(iter_results([paths], raw, workers=1, stage=stage), tmp_path / "out", inputs=len(paths))
        assert not any(stage.rglob("*.json"))
    monkeypatch.setattr(appfiles.os, "replace", real_replace)
    publish(iter_results([paths], raw, workers=1), tmp_path / "plain", inputs=len(paths))
    assert app_files(tmp_path / "out" / "latest") == app_files(tmp_path / "plain" / "latest")


def published_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Five records published in chunks of two, their tables built in this process (``here``);
    afterwards any number of records goes to a pool. Returns the results."""
    results = [record(f"{29870 + i}") for i in range(5)]
    monkeypatch.setattr(writer, "RECORDS_PER_CHUNK", 2)
    publish(results, tmp_path / "here", inputs=len(results))
    monkeypatch.setattr(writer, "POOL_MIN_RECORDS", 1)
    return results


def assert_same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        assert pq.read_table(a / "latest" / name).equals(pq.read_table(b / "latest" / name)), name


def test_publish_builds_chunks_in_the_callers_pool_and_leaves_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.process import pool_context

    results = published_here(tmp_path, monkeypatch)
    submitted: list[int] = []

    class CallersPool(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    def no_pool_of_its_own(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("publish started a pool of its own")

    with CallersPool(max_workers=2, mp_context=pool_context()) as pool:
        monkeypatch.setattr(writer, "ProcessPoolExecutor", no_pool_of_its_own)
        publish(results, tmp_path / "pool", inputs=len(results), executor=pool)
        assert submitted == [2, 2, 1]
        assert pool.submit(len, "still running").result() == 13
    assert_same_tables(tmp_path / "here", tmp_path / "pool")


def test_a_record_dumped_either_way_prepares_to_the_same_line(tmp_path: Path) -> None:
    """Workers validate the record's Python-mode dump (cheaper than the JSON one): on every sample it
    gives the line, byte for byte, that the JSON-able result dict gives."""
    from pipeline.process import process_page
    from pipeline.sources.files import discover

    raw = Path(__file__).resolve().parent.parent / "raw"
    lines = 0
    for file in discover(raw):
        rel = file.relative_to(raw).as_posix()
        as_json, as_python = process_page(rel, raw), process_page(rel, raw, mode="python")
        if "record" not in as_json:
            assert as_python == as_json  # the same reject
            continue
        a = prepare_record(as_json["record"], None)["prepared"]
        b = prepare_record(as_python["record"], None)["prepared"]
        assert a == b
        lines += 1
    assert lines > 40


def test_the_flow_builds_the_chunks_in_its_parsing_pool(
    prefect_harness: None, sample_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``process`` flow hands its parsing pool (idle once every batch is parsed) to publish: no
    pool of publish's own is started, and the tables are those of a plain run."""
    from pipeline.flows import process
    from pipeline.process import run_local

    plain = run_local(sample_raw, tmp_path / "plain", workers=1)
    monkeypatch.setattr(writer, "RECORDS_PER_CHUNK", 1)
    monkeypatch.setattr(writer, "POOL_MIN_RECORDS", 1)

    def no_pool_of_its_own(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("publish started a pool of its own")

    monkeypatch.setattr(writer, "ProcessPoolExecutor", no_pool_of_its_own)
    manifest = process(str(sample_raw), str(tmp_path / "flow"), batch_size=2, workers=2)
    assert manifest.counts == plain.counts
    for name in TABLES:
        table = pq.read_table(tmp_path / "flow" / "latest" / name)
        assert table.equals(pq.read_table(tmp_path / "plain" / "latest" / name)), name
    assert pq.ParquetFile(tmp_path / "flow" / "latest" / "procedures.parquet").metadata.num_row_groups == 3


def test_chunks_are_built_here_when_the_pool_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool that no longer takes work (shut down by its owner): publish builds the chunks itself."""
    from pipeline.process import pool_context

    results = published_here(tmp_path, monkeypatch)
    pool = ProcessPoolExecutor(max_workers=1, mp_context=pool_context())
    pool.shutdown()
    publish(results, tmp_path / "closed", inputs=len(results), executor=pool)
    assert_same_tables(tmp_path / "here", tmp_path / "closed")
