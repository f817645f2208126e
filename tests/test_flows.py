"""The Prefect flow under one session-wide ``prefect_test_harness``: batched parse tasks, publish,
the run-summary artifacts, and outputs read back with pandas and pyarrow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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


def crashing_batch(paths: list[str], raw_dir: str, stage: str | None = None) -> list[dict[str, Any]]:
    """The real batch worker, except that it dies outright (like a segfault) on a page named crash*."""
    from pipeline.process import process_batch

    if any(Path(p).name.startswith("crash") for p in paths):
        os._exit(70)
    return process_batch(paths, raw_dir, stage)


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


def held_batch(paths: list[str], raw_dir: str, stage: str | None = None) -> list[dict[str, Any]]:
    """The real batch worker, except that the batch holding the page named in ``<raw>/../hold`` waits
    (up to a minute) until the parent has published a first batch, and notes whether it saw that."""
    from pipeline.process import process_batch

    signals = Path(raw_dir).parent
    hold = signals / "hold"
    if hold.is_file() and hold.read_text(encoding="utf-8") in paths:
        first = signals / "first-batch-published"
        for _ in range(600):
            if first.exists():
                break
            time.sleep(0.1)
        (signals / ("saw" if first.exists() else "gave-up")).touch()
    return process_batch(paths, raw_dir, stage)


def test_flow_publishes_batches_in_order_while_later_ones_still_parse(
    prefect_harness: None, sample_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish task reads each batch's file as soon as that batch is done, in batch order, while
    later batches are still being parsed; files are deleted once read; outputs equal ``run_local``'s."""
    from pipeline import flows
    from pipeline.process import run_local
    from pipeline.sources.files import discover

    last_page = discover(sample_raw)[-1].relative_to(sample_raw).as_posix()
    (tmp_path / "hold").write_text(last_page, encoding="utf-8")
    loaded: list[str] = []
    real_load = flows.load_spool

    def watched(path: str) -> list[dict[str, Any]]:
        loaded.append(path)
        batch = real_load(path)
        (tmp_path / "first-batch-published").touch()
        return batch

    monkeypatch.setattr(flows, "process_batch", held_batch)
    monkeypatch.setattr(flows, "load_spool", watched)
    manifest = flows.process(sample_raw, tmp_path / "flow", batch_size=2, workers=2)
    assert manifest.counts.model_dump() == SAMPLE_COUNTS
    assert (tmp_path / "saw").exists() and not (tmp_path / "gave-up").exists()  # publish overlapped parsing
    assert [Path(p).name for p in loaded] == [f"batch-{i:06d}.pickle" for i in range(4)]  # batch order
    assert not Path(loaded[0]).parent.exists()  # read files deleted, the spool folder gone

    run_local(sample_raw, tmp_path / "local", workers=1, batch_size=200)
    for name in ("procedures.jsonl", "rejects.jsonl"):
        flow_out = (tmp_path / "flow" / "latest" / name).read_text(encoding="utf-8")
        assert flow_out == (tmp_path / "local" / "latest" / name).read_text(encoding="utf-8")


def flaky_batch(paths: list[str], raw_dir: str, stage: str | None = None) -> list[dict[str, Any]]:
    """The real batch worker, noting each call in ``<raw>/../calls``; the batch holding the page named
    in ``<raw>/../flaky`` raises on its first call (like a full disk), as a whole batch, not a page."""
    from pipeline.process import process_batch

    signals = Path(raw_dir).parent
    with (signals / "calls").open("a", encoding="utf-8") as fh:
        fh.write(paths[0] + "\n")
    flaky, failed = signals / "flaky", signals / "failed-once"
    if flaky.read_text(encoding="utf-8") in paths and not failed.exists():
        failed.touch()
        raise OSError("no space left on device (simulated)")
    return process_batch(paths, raw_dir, stage)


def test_a_task_parses_several_batches_and_its_retry_reruns_only_the_failed_one(
    prefect_harness: None, sample_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four batches, two to a task: two task runs. A batch that raises fails its task, whose retry
    parses that batch again but not the one that succeeded; the records are those of one batch a task."""
    from pipeline import flows
    from pipeline.sources.files import discover

    pages = [p.relative_to(sample_raw).as_posix() for p in discover(sample_raw)]
    (tmp_path / "flaky").write_text(pages[5], encoding="utf-8")  # batch 2 of [0,1] [2,3] [4,5] [6]
    (tmp_path / "calls").touch()
    parses: list[list[str]] = []
    real_parse = flows._RunBatches.parse

    def watched(self: Any, batches: list[list[str]], raw_dir: str, spool_to: list[str]) -> Any:
        parses.append([Path(p).name for p in spool_to])
        return real_parse(self, batches, raw_dir, spool_to)

    monkeypatch.setattr(flows, "process_batch", flaky_batch)
    monkeypatch.setattr(flows._RunBatches, "parse", watched)
    manifest = flows.process(sample_raw, tmp_path / "out", batch_size=2, workers=2, batches_per_task=2)
    assert manifest.counts.model_dump() == SAMPLE_COUNTS
    names = [f"batch-{i:06d}.pickle" for i in range(4)]
    assert sorted(parses) == sorted([names[:2], names[2:], names[2:]])  # the second task ran twice
    calls = (tmp_path / "calls").read_text(encoding="utf-8").splitlines()
    assert sorted(calls) == sorted([pages[0], pages[2], pages[4], pages[4], pages[6]])  # batch 2 twice

    one = flows.process(sample_raw, tmp_path / "one", batch_size=2, workers=2, batches_per_task=1)
    assert one.counts == manifest.counts
    for name in ("procedures.jsonl", "rejects.jsonl"):
        a = (tmp_path / "out" / "latest" / name).read_text(encoding="utf-8")
        assert a == (tmp_path / "one" / "latest" / name).read_text(encoding="utf-8")


def test_flow_refuses_batches_per_task_below_one(
    prefect_harness: None, sample_raw: Path, tmp_path: Path
) -> None:
    from pipeline.flows import process

    state = process(str(sample_raw), str(tmp_path / "out"), batches_per_task=0, return_state=True)
    assert state.is_failed()
    with pytest.raises(UsageError, match="batches_per_task must be at least 1"):
        state.result()


def test_head_start_work_is_taken_over_by_the_flow(
    prefect_harness: None, sample_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calling the flow begins a head start (plan, pool, first batches) that its body claims: the
    plan it publishes is the head start's, and nothing of it is left behind."""
    from pipeline import flows

    claimed: list[Any] = []
    real_claim = flows._claim_head_start

    def watched(*args: Any) -> Any:
        head = real_claim(*args)
        claimed.append(
            (head, head.plan if head is not None else None, head.folder if head is not None else None)
        )
        return head

    monkeypatch.setattr(flows, "_claim_head_start", watched)
    manifest = flows.process(str(sample_raw), str(tmp_path / "out"), batch_size=2, workers=2)
    assert manifest.counts.model_dump() == SAMPLE_COUNTS
    ((head, plan, folder),) = claimed
    assert head is not None and plan is not None and sorted(plan.to_parse) == sorted(plan.paths)
    assert head.folder is None and head.pool is None  # handed over to the flow run, which removed them
    assert folder is not None and not folder.exists()
    assert flows._HEAD_STARTS == []


def test_head_start_is_released_when_the_flow_does_not_take_it(
    prefect_harness: None, sample_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails before it plans (here: a gates file that does not exist) leaves no pool,
    no spool folder and no pending head start."""
    from pipeline import flows

    begun: list[Any] = []
    real_begin = flows._begin_head_start

    def watched(*args: Any, **kwargs: Any) -> Any:
        head = real_begin(*args, **kwargs)
        begun.append((head, head.folder if head is not None else None))
        return head

    monkeypatch.setattr(flows, "_begin_head_start", watched)
    gates = str(tmp_path / "no-such-gates.toml")
    state = flows.process(
        str(sample_raw), str(tmp_path / "out"), batch_size=2, gates=gates, return_state=True
    )
    assert state.is_failed()
    ((head, folder),) = begun
    assert head is not None and folder is not None
    assert head.folder is None and head.pool is None and not folder.exists()
    assert flows._HEAD_STARTS == []


def test_head_start_plan_is_dropped_when_the_out_folder_changed(sample_raw: Path, tmp_path: Path) -> None:
    """A head start's plan holds only while ``out``'s current version is the one it planned against."""
    from pipeline import flows
    from pipeline.process import run_local

    out = tmp_path / "out"
    head = flows._HeadStart(sample_raw, out, full=False, batch_size=2, workers=2).claim()
    try:
        assert head.plan is not None and head.still_valid()
        run_local(sample_raw, out, workers=1)  # another run publishes meanwhile
        assert not head.still_valid()
    finally:
        head.close()


def _unprepared(result: dict[str, Any]) -> dict[str, Any]:
    """A spooled result as ``process_batch`` without a staging folder gives it: a record prepared
    for publishing (``pipeline.publish.prepare``) back to its record dict."""
    return {"record": json.loads(result["prepared"][0])} if "prepared" in result else result


def _run_taken_over(head: Any, raw: Path) -> list[list[dict[str, Any]]]:
    """Let ``head`` start all its batches, claim it, and run every batch through its pool as the
    flow's tasks would: each batch's results, read from its file."""
    from pipeline import flows
    from pipeline.process import load_spool

    head._thread.join()
    if head._feeder is not None:
        head._feeder.join()  # not stopped: it starts every batch
    head.claim()
    pool, folder = head.hand_over()
    assert pool is not None
    try:
        batches = flows._batches(head.plan.to_parse, head.batch_size)
        return [
            [
                _unprepared(r)
                for r in load_spool(pool.run(batch, str(raw), str(folder / flows._spool_name(i)))["path"])
            ]
            for i, batch in enumerate(batches)
        ]
    finally:
        pool.shutdown()
        head.close()
        shutil.rmtree(folder)


def test_head_start_batches_give_what_the_batch_worker_gives(sample_raw: Path, tmp_path: Path) -> None:
    """With nothing published yet, a head start begins on the discovered pages while it plans; its
    batches, taken over, give exactly what ``process_batch`` gives."""
    from pipeline import flows
    from pipeline.process import process_batch

    head = flows._HeadStart(
        sample_raw, tmp_path / "out", full=False, batch_size=3, workers=3, spare_core=True
    )
    results = _run_taken_over(head, sample_raw)
    assert head.early == 3 and len(head.plan.to_parse) == SAMPLE_COUNTS["inputs"]
    batches = flows._batches(head.plan.to_parse, 3)
    assert results == [process_batch(batch, str(sample_raw)) for batch in batches]


def test_head_start_of_an_incremental_run_parses_only_what_changed(sample_raw: Path, tmp_path: Path) -> None:
    """Against a published version, a head start waits for the plan and starts only its batches."""
    from pipeline import flows
    from pipeline.incremental import run
    from pipeline.process import process_batch
    from pipeline.sources.files import discover

    run(sample_raw, tmp_path / "out", workers=1)  # with its input ledger
    changed = [p for p in discover(sample_raw) if p.suffix == ".txt"][:2]
    for path in changed:
        path.write_text(path.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    head = flows._HeadStart(sample_raw, tmp_path / "out", full=False, batch_size=1, workers=2)
    results = _run_taken_over(head, sample_raw)
    to_parse = head.plan.to_parse
    assert {p.relative_to(sample_raw).as_posix() for p in changed} <= set(to_parse)
    assert len(to_parse) < SAMPLE_COUNTS["inputs"] and head.early == len(to_parse)  # one page per batch
    assert results == [process_batch([rel], str(sample_raw)) for rel in head.plan.to_parse]


ONE_OFF_RUN = """
import sys
from pipeline import flows
manifest = flows.process(sys.argv[1], sys.argv[2], batch_size=2, workers=2)
server = flows._TemporaryServer._current
print(manifest.counts.inputs, "prefect.server.api.server" in sys.modules, server.proc.pid)
"""


def test_a_one_off_run_starts_the_temporary_server_without_its_code(sample_raw: Path, tmp_path: Path) -> None:
    """With no Prefect API configured, calling the flow launches Prefect's temporary server itself
    (not importing the server's code into the calling process), and stops it when the process ends."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    code = [sys.executable, "-c", ONE_OFF_RUN, str(sample_raw), str(tmp_path / "out")]
    proc = subprocess.run(code, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    inputs, imported, pid = proc.stdout.split()
    assert (int(inputs), imported) == (SAMPLE_COUNTS["inputs"], "False")
    assert (tmp_path / "out" / "latest" / "manifest.json").is_file()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # the server is gone with the process that started it


def test_spooled_batches_read_back_exactly_and_in_order(tmp_path: Path) -> None:
    from pipeline.flows import read_spool, spool_batch

    first = [{"record": {"record_id": "a", "codes": ["1", "2"], "n": 1.5}}, {"reject": {"source": "x"}}]
    second = [{"record": {"record_id": "b", "text": "caf\u00e9 \u2013 \u00bd"}}]
    a = spool_batch(first, tmp_path / "a")
    b = spool_batch(second, tmp_path / "b")
    assert (a["results"], a["records"], b["results"], b["records"]) == (2, 1, 1, 1)
    assert list(read_spool([a["path"], b["path"]])) == first + second
    assert list(read_spool([b["path"], a["path"]])) == second + first
