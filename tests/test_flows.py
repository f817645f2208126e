"""The Prefect flow under one session-wide ``prefect_test_harness``: batched parse tasks, publish,
the run-summary artifacts, and outputs read back with pandas and pyarrow."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE_COUNTS, SAMPLE_RECORD_IDS, write_pages

from pipeline.errors import UsageError
from schemas import Manifest


def _artifacts(flow_run_id: object) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


@pytest.mark.parametrize(("batch_size", "workers"), [(2, 2), (200, 1)], ids=["4-batches", "inline"])
def test_flow_publishes_every_input_and_a_summary_artifact(
    prefect_harness: None, sample_raw: Path, tmp_path: Path, batch_size: int, workers: int
) -> None:
    from pipeline.flows import CHANGES_KEY, QUALITY_KEY, REPORT_KEY, SUMMARY_KEY, process

    out = tmp_path / "out"
    state = process(str(sample_raw), str(out), batch_size=batch_size, workers=workers, return_state=True)
    assert state.is_completed()
    manifest = state.result()
    assert isinstance(manifest, Manifest)
    assert manifest.counts.model_dump() == SAMPLE_COUNTS

    latest = out / "latest"
    assert Manifest.model_validate_json((latest / "manifest.json").read_bytes()) == manifest
    procedures = pd.read_parquet(latest / "procedures.parquet")
    assert set(procedures["record_id"]) == SAMPLE_RECORD_IDS
    sections = pq.read_table(latest / "sections.parquet")
    assert set(sections.column("record_id").to_pylist()) == SAMPLE_RECORD_IDS
    lines = (latest / "procedures.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["record_id"] for line in lines) == sorted(SAMPLE_RECORD_IDS)
    rejects = pq.read_table(latest / "rejects.parquet").to_pylist()
    assert len(rejects) == SAMPLE_COUNTS["rejects"] and all(r["reason"] for r in rejects)
    for name, entry in manifest.files.items():
        assert (latest / name).stat().st_size == entry.bytes
        if name.endswith(".parquet"):
            assert pq.read_metadata(latest / name).num_rows == entry.rows

    artifacts = _artifacts(state.state_details.flow_run_id)
    assert {SUMMARY_KEY, REPORT_KEY, QUALITY_KEY, CHANGES_KEY} <= set(artifacts)
    table = json.loads(artifacts[SUMMARY_KEY].data)
    counts = {row["name"]: row["value"] for row in table if row["group"] == "counts"}
    assert counts == SAMPLE_COUNTS
    coverage = {row["name"]: row["value"] for row in table if row["group"] == "coverage"}
    assert coverage["indications"] == 1.0
    assert sum(row["value"] for row in table if row["group"] == "rejects") == SAMPLE_COUNTS["rejects"]
    assert "broken sidecar" in artifacts[REPORT_KEY].data


def test_flow_batches_do_not_change_the_records(
    prefect_harness: None, sample_raw: Path, tmp_path: Path
) -> None:
    from pipeline.flows import process

    one = process(sample_raw, tmp_path / "one", batch_size=200, workers=2)  # Path or str
    many = process(str(sample_raw), str(tmp_path / "many"), batch_size=1, workers=2)
    assert one.counts == many.counts
    a = (tmp_path / "one" / "latest" / "procedures.jsonl").read_text(encoding="utf-8")
    b = (tmp_path / "many" / "latest" / "procedures.jsonl").read_text(encoding="utf-8")
    assert a == b


def test_flow_on_an_empty_folder_publishes_an_empty_version(prefect_harness: None, tmp_path: Path) -> None:
    from pipeline.flows import process

    (tmp_path / "raw").mkdir()
    manifest = process(str(tmp_path / "raw"), str(tmp_path / "out"))
    assert manifest.counts.model_dump() == {"inputs": 0, "records": 0, "rejects": 0, "duplicates": 0}
    assert pd.read_parquet(tmp_path / "out" / "latest" / "procedures.parquet").empty


def test_flow_refuses_a_missing_raw_folder(prefect_harness: None, tmp_path: Path) -> None:
    from pipeline.flows import process

    state = process(str(tmp_path / "nowhere"), str(tmp_path / "out"), return_state=True)
    assert state.is_failed()
    with pytest.raises(UsageError, match="raw folder not found"):
        state.result()
    assert not (tmp_path / "out").exists()


def crashing_batch(paths: list[str], raw_dir: str) -> list[dict[str, Any]]:
    """The real batch worker, except that it dies outright (like a segfault) on a page named crash*."""
    from pipeline.process import process_batch

    if any(Path(p).name.startswith("crash") for p in paths):
        os._exit(70)
    return process_batch(paths, raw_dir)


def test_a_dying_worker_costs_only_its_own_pages(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import flows

    raw = write_pages(tmp_path / "raw")
    (raw / "site" / "cpt" / "crash.txt").write_text("kills its worker", encoding="utf-8")
    monkeypatch.setattr(flows, "process_batch", crashing_batch)
    manifest = flows.process(raw, tmp_path / "out", batch_size=1, workers=2)
    assert manifest.counts.model_dump() == {**SAMPLE_COUNTS, "inputs": 8, "rejects": 4}
    rejects = {
        r["source"]: r["reason"] for r in pq.read_table(tmp_path / "out/latest/rejects.parquet").to_pylist()
    }
    assert rejects["site/cpt/crash.txt"] == "internal error: worker process failed: BrokenProcessPool"


def test_flow_results_go_through_spool_files_and_match_run_local(
    prefect_harness: None, sample_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import flows
    from pipeline.process import run_local

    read: list[str] = []
    results: list[dict[str, Any]] = []
    real_read_spool = flows.read_spool

    def watched(paths: list[str]) -> Any:
        for path in paths:  # every batch is a file on disk by the time publish reads it
            assert Path(path).is_file() and Path(path).stat().st_size > 0
            read.append(path)
        for result in real_read_spool(paths):
            results.append(result)
            yield result

    monkeypatch.setattr(flows, "read_spool", watched)
    manifest = flows.process(sample_raw, tmp_path / "flow", batch_size=2, workers=2)
    assert manifest.counts.model_dump() == SAMPLE_COUNTS
    assert [Path(p).name for p in read] == [f"batch-{i:06d}.pickle" for i in range(4)]  # batch order
    assert len(results) == SAMPLE_COUNTS["inputs"]
    assert not Path(read[0]).parent.exists()  # the spool folder is gone after publishing

    run_local(sample_raw, tmp_path / "local", workers=1, batch_size=200)
    for name in ("procedures.jsonl", "rejects.jsonl"):
        flow_out = (tmp_path / "flow" / "latest" / name).read_text(encoding="utf-8")
        assert flow_out == (tmp_path / "local" / "latest" / name).read_text(encoding="utf-8")


def test_spooled_batches_read_back_exactly_and_in_order(tmp_path: Path) -> None:
    from pipeline.flows import read_spool, spool_batch

    first = [{"record": {"record_id": "a", "codes": ["1", "2"], "n": 1.5}}, {"reject": {"source": "x"}}]
    second = [{"record": {"record_id": "b", "text": "caf\u00e9 \u2013 \u00bd"}}]
    a = spool_batch(first, tmp_path / "a")
    b = spool_batch(second, tmp_path / "b")
    assert (a["results"], a["records"], b["results"], b["records"]) == (2, 1, 1, 1)
    assert list(read_spool([a["path"], b["path"]])) == first + second
    assert list(read_spool([b["path"], a["path"]])) == second + first
