"""The ``process`` flow on a Dask cluster (``prefect-dask``) and with fsspec URLs for its folders.

A real ``distributed.LocalCluster`` (two worker processes, one thread each) runs the batch tasks;
its outputs must equal the default runner's over the same pages: the project's own ``raw/`` pages
plus the sample pages of ``conftest`` (a duplicate and three bad inputs). Run-specific fields
(run id, creation time) are the only allowed differences.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_pages

from schemas import Manifest

#: fields that name the run rather than the data
RUN_FIELDS = {"run_id", "created_at", "previous_run_id"}


def _drop_run_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_run_fields(v) for k, v in value.items() if k not in RUN_FIELDS}
    if isinstance(value, list):
        return [_drop_run_fields(v) for v in value]
    return value


def _lines(path: Path) -> list[Any]:
    return [_drop_run_fields(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]


def _outputs(version: Path) -> dict[str, list[Any]]:
    names = ("procedures.jsonl", "rejects.jsonl", "duplicates.jsonl")
    return {name: _lines(version / name) for name in names}


@pytest.fixture(scope="module")
def raw_pages(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's own raw pages and the conftest samples, copied into one raw folder."""
    raw = tmp_path_factory.mktemp("dask") / "raw"
    if (repo_root / "raw").is_dir():
        shutil.copytree(repo_root / "raw", raw / "project")
    write_pages(raw / "samples")
    return raw


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local Dask cluster: two worker processes, one thread each, logs kept quiet."""
    from distributed import LocalCluster

    from pipeline.dask_runner import local_cluster_kwargs, quiet_dask

    quiet_dask()
    with LocalCluster(**local_cluster_kwargs(2)) as c:
        yield c


def _tasks_done(cluster: Any) -> int:
    """How many tasks the cluster's workers have finished (prefect-dask names them after a wrapper)."""
    return sum(prefix.state_counts["memory"] for prefix in cluster.scheduler.task_prefixes.values())


def test_dask_runner_publishes_what_the_default_runner_publishes(
    prefect_harness: None, raw_pages: Path, cluster: Any, tmp_path: Path
) -> None:
    from pipeline.dask_runner import task_runner
    from pipeline.flows import process

    default_out, dask_out = tmp_path / "default", tmp_path / "dask"
    kwargs = {"batch_size": 10, "workers": 2, "full": True}
    state = process(str(raw_pages), str(default_out), **kwargs, return_state=True)
    assert state.is_completed()
    on_default: Manifest = state.result()

    on_dask_flow = process.with_options(task_runner=task_runner(address=cluster.scheduler_address))
    # file:// URLs: the fsspec form of a local folder the workers can reach
    state = on_dask_flow(raw_pages.as_uri(), dask_out.as_uri(), **kwargs, return_state=True)
    assert state.is_completed(), state.message
    on_dask: Manifest = state.result()

    batches = -(-on_default.counts.inputs // 10)
    assert _tasks_done(cluster) >= batches  # the batches ran on the cluster
    assert on_dask.counts == on_default.counts
    assert on_default.counts.records > 20 and on_default.counts.rejects >= 3
    assert on_dask.run_id != on_default.run_id
    assert _outputs(dask_out / "latest") == _outputs(default_out / "latest")
    assert (dask_out / "LATEST").read_text().strip() == on_dask.run_id


def test_url_folders_read_pages_and_publish_through_fsspec(
    prefect_harness: None, raw_pages: Path, tmp_path: Path
) -> None:
    """Raw pages and output behind a non-local fsspec URL (``memory://``, visible to this process)."""
    import fsspec

    from pipeline.flows import process

    mem = fsspec.filesystem("memory")
    for path in sorted(raw_pages.rglob("*")):
        if path.is_file():
            mem.pipe_file(f"/raw/{path.relative_to(raw_pages).as_posix()}", path.read_bytes())
    local_out = tmp_path / "local"
    kwargs = {"batch_size": 1000, "workers": 1}  # one batch in this process: memory:// is per process
    try:
        local = process(str(raw_pages), str(local_out), **kwargs)
        first = process("memory://raw", "memory://out", **kwargs)
        second = process("memory://raw", "memory://out", **kwargs)
        assert mem.cat_file("/out/LATEST").decode().strip() == second.run_id
        version = tmp_path / "fetched"
        mem.get("/out/versions/" + second.run_id, str(version), recursive=True)
    finally:
        mem.rm("/raw", recursive=True)
        if mem.exists("/out"):
            mem.rm("/out", recursive=True)
    assert first.counts == local.counts
    assert _outputs(version) == _outputs(local_out / "latest")
    assert second.previous_run_id == first.run_id  # staged against the store's latest version
    assert second.changes is not None and second.changes["unchanged"] == local.counts.records
    assert Manifest.model_validate_json((version / "manifest.json").read_bytes()).run_id == second.run_id


def test_url_raw_rejects_like_a_local_folder(tmp_path: Path) -> None:
    """A page over the size limit is rejected from its listed size; a broken sidecar as locally."""
    import fsspec

    from pipeline.process import process_batch
    from pipeline.sources.files import discover
    from pipeline.sources.remote import discover_url, process_batch_url

    raw = write_pages(tmp_path / "raw")
    (raw / "big.txt").write_bytes(b"x" * 2048)
    (raw / ".hidden.txt").write_text("not an input")
    mem = fsspec.filesystem("memory")
    try:
        for path in raw.rglob("*"):
            if path.is_file():
                mem.pipe_file(f"/rawcheck/{path.relative_to(raw).as_posix()}", path.read_bytes())
        paths = discover_url("memory://rawcheck")
        local_paths = [p.relative_to(raw).as_posix() for p in discover(raw)]
        assert paths == local_paths
        os.environ["PROCPIPE_MAX_PAGE_BYTES"] = "1024"
        try:
            remote = process_batch_url(paths, "memory://rawcheck")
            here = process_batch(paths, str(raw))
        finally:
            del os.environ["PROCPIPE_MAX_PAGE_BYTES"]
    finally:
        mem.rm("/rawcheck", recursive=True)
    assert remote == here
    assert any("page too large" in r["reject"]["reason"] for r in remote if "reject" in r)
    assert any("broken sidecar" in r["reject"]["reason"] for r in remote if "reject" in r)


def test_dask_logs_are_quiet() -> None:
    from pipeline.dask_runner import quiet_dask

    quiet_dask()
    assert logging.getLogger("distributed").getEffectiveLevel() >= logging.ERROR
