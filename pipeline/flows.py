"""Prefect flows: the main job (raw pages -> published version) arranged as batched tasks.

The flow is thin: the work is done by plain functions (``discover``, ``process_batch``, ``publish``)
that run without Prefect too (``pipeline.process.run_local``). What Prefect adds here: one task per
batch of ``batch_size`` pages (hundreds, never one per page: a task costs ~10 ms of bookkeeping),
one retry per batch, a publish task, stage logs and a run-summary artifact.

Parsing uses both cores without ``ProcessPoolTaskRunner`` (whose workers each import Prefect, ~9 s):
the batch tasks run on the default thread runner and hand their pages to one plain
``ProcessPoolExecutor`` spawned per flow run, whose workers import only the parser (well under a
second). A worker that dies (a crash inside a C extension) breaks the pool: the pool is replaced,
and the batch it was running is re-run alone in a fresh process; if it kills that one too, its pages
become rejects ("worker process failed") and the run goes on.

Memory stays flat with the number of pages: each batch's results are spooled to a file in a private
temporary folder (``spool``) as soon as they arrive, the batch task returns only the file's path and
counts, and publishing reads the files back one batch at a time, in batch order (``read_spool``).
On Dask the batch runs on a worker that may not see the flow's disk, so its results come back in
memory and the flow spools them as each batch's future is collected (then releases the future).
The folder is removed when the run ends, published or not.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote, unmapped

from pipeline.errors import UsageError
from pipeline.process import process_batch, reject_result
from pipeline.sources.remote import is_url, process_batch_url
from schemas import Manifest

SUMMARY_KEY = "procpipe-run-summary"
REPORT_KEY = "procpipe-run-report"
QUALITY_KEY = "procpipe-quality"
CHANGES_KEY = "procpipe-changes"

Result = dict[str, Any]
#: what a spooled batch task returns: ``{"path": str, "results": int, "records": int}``
Spooled = dict[str, Any]


def _context() -> Any:
    import multiprocessing

    # forkserver: workers do not inherit the flow process's threads and locks (Prefect runs several)
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class _Pool:
    """A process pool shared by the batch tasks of one flow run; replaced once when a worker dies."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=_context())

    def run(self, batch: list[str], raw_dir: str) -> list[Result]:
        executor = self._executor
        try:
            return executor.submit(_batch_fn(raw_dir), batch, raw_dir).result()
        except BrokenProcessPool:
            self._replace(executor)
            return _alone(batch, raw_dir)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:  # the first task to notice replaces it for all
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=_context())

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _alone(batch: list[str], raw_dir: str) -> list[Result]:
    """Run one batch in a fresh one-worker pool; its pages become rejects if that worker dies too."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_context()) as solo:
        try:
            return solo.submit(_batch_fn(raw_dir), batch, raw_dir).result()
        except Exception as exc:  # noqa: BLE001 - a worker crash must not fail the run
            reason = f"internal error: worker process failed: {type(exc).__name__}"
            return [reject_result(p, "parse", reason) for p in batch]


def _batch_fn(raw_dir: str) -> Any:
    """``process_batch``, or its fsspec twin when the raw folder is a URL (``pipeline.sources.remote``)."""
    return process_batch_url if is_url(raw_dir) else process_batch


#: ``hook(done, total)`` in pages, called by the ``process`` flow when its parse stage starts and
#: after each batch's results arrive; the command line sets it to draw a progress bar (``pipeline.cli``).
ProgressHook = Callable[[int, int], None]
_progress_hook: ProgressHook | None = None


@contextmanager
def parse_progress(hook: ProgressHook) -> Iterator[None]:
    """Report the parse stage of the flows run inside the block (in this process) to ``hook``."""
    global _progress_hook
    previous, _progress_hook = _progress_hook, hook
    try:
        yield
    finally:
        _progress_hook = previous


def _report_progress(done: int, total: int) -> None:
    hook = _progress_hook
    if hook is not None:
        hook(done, total)


def spool_batch(results: list[Result], path: str | Path) -> Spooled:
    """Write one batch's results to ``path``; returns its path and counts.

    Pickle, not JSON: an exact round trip of the result dicts, and the file is private to this run
    (written and read back by the same flow, then deleted)."""
    with open(path, "wb") as fh:
        pickle.dump(results, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return {"path": str(path), "results": len(results), "records": sum("record" in r for r in results)}


def read_spool(paths: Iterable[str]) -> Iterator[Result]:
    """The results of the spooled batches at ``paths``, in that order, one batch in memory at a time."""
    for path in paths:
        with open(path, "rb") as fh:
            batch: list[Result] = pickle.load(fh)  # noqa: S301 - our own file, written by this run
        yield from batch
        del batch


@contextmanager
def spool() -> Iterator[Path]:
    """A private temporary folder for the batches' result files, removed on the way out."""
    folder = Path(tempfile.mkdtemp(prefix="procpipe-spool-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# pools by token: a task parameter must be hashable text, not an executor
_POOLS: dict[str, _Pool] = {}


@contextmanager
def _shared_pool(workers: int, batches: int) -> Iterator[str | None]:
    """A pool token for the batch tasks, or None when one process is enough (one batch, one worker)."""
    size = min(workers, batches)
    if size <= 1:
        yield None
        return
    token = uuid.uuid4().hex
    _POOLS[token] = _Pool(size)
    try:
        yield token
    finally:
        _POOLS.pop(token).shutdown()


@task(name="parse-batch", retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE, persist_result=False)
def parse_batch(
    paths: list[str], raw_dir: str, pool: str | None = None, spool_to: str | None = None
) -> list[Result] | Spooled:
    """Parse a batch of pages (paths relative to ``raw_dir``): one record or reject dict per page.

    With ``spool_to`` the results are written to that file and only its path and counts are
    returned (``spool_batch``). On Dask (no pool in the worker) it runs here, in the worker process,
    and returns the results themselves."""
    shared = _POOLS.get(pool) if pool else None
    results = shared.run(paths, raw_dir) if shared else _batch_fn(raw_dir)(paths, raw_dir)
    return spool_batch(results, spool_to) if spool_to else results


@task(name="publish", cache_policy=NO_CACHE, persist_result=False)
def publish_results(
    spooled: list[str],
    out_dir: str,
    inputs: int,
    run_id: str | None = None,
    plan: Any = None,
    keep: int | None = None,
    gates: Any = None,
    force: bool = False,
) -> Manifest:
    """Write the spooled results (files in batch order, plus the results ``plan`` reuses) as a new
    version of ``out_dir``, make it ``latest``; the files are streamed, one batch at a time."""
    from pipeline.publish import publish

    return publish(
        read_spool(spooled), Path(out_dir), inputs=inputs, run_id=run_id, plan=plan, keep=keep, gates=gates,
        force=force,
    )  # fmt: skip


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run summary as Markdown (the flow's report artifact)."""
    counts = summary["counts"]
    lines = [
        f"# procpipe run {summary['run_id']}",
        "",
        f"Published to `{summary['path']}`.",
        "",
        "| inputs | records | rejects | duplicates |",
        "|---:|---:|---:|---:|",
        f"| {counts['inputs']} | {counts['records']} | {counts['rejects']} | {counts['duplicates']} |",
        "",
        "## Rejects by reason",
        "",
    ]
    if summary["rejects_by_reason"]:
        lines += ["| reason | pages |", "|---|---:|"]
        lines += [f"| {reason} | {n} |" for reason, n in summary["rejects_by_reason"].items()]
    else:
        lines.append("None.")
    lines += ["", "## Section coverage (share of records having the section)", ""]
    lines += ["| section | share |", "|---|---:|"]
    lines += [f"| {key} | {share:.0%} |" for key, share in summary["coverage"].items()]
    return "\n".join(lines) + "\n"


def summary_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The run summary as rows ``{group, name, value}``: counts, rejects by reason, section coverage."""
    rows = [{"group": "counts", "name": k, "value": v} for k, v in summary["counts"].items()]
    rows += [{"group": "rejects", "name": r, "value": n} for r, n in summary["rejects_by_reason"].items()]
    rows += [{"group": "coverage", "name": k, "value": round(s, 4)} for k, s in summary["coverage"].items()]
    return rows


def _es(n: int) -> str:
    return "" if n == 1 else "es"


@flow(name="process", log_prints=False)
def process(
    raw_dir: str | Path = "raw",
    out_dir: str | Path = "processed",
    batch_size: int = 200,
    workers: int = 2,
    keep: int | None = None,
    wait: float = 0.0,
    force: bool = False,
    gates: str | None = None,
    full: bool = False,
) -> Manifest:
    """Every page under ``raw_dir`` into a new published version of ``out_dir``; returns its manifest.

    Incremental (``pipeline.incremental``): pages unchanged since the current version reuse their
    results (``full``: parse everything). ``keep`` versions are kept (10), ``wait`` seconds are spent
    waiting for another run's lock on ``out_dir``, ``gates`` names a quality gates file (default:
    ``procpipe.toml`` here, else the defaults) and ``force`` publishes past a failed gate.

    On a ``DaskTaskRunner`` (``pipeline.dask_runner``) the batches run on the Dask workers. Either
    folder may be an fsspec URL: raw pages are then read by the batches, the output is staged
    locally and uploaded (``pipeline.sources.remote``, ``pipeline.publish.remote``).
    """
    from prefect.context import FlowRunContext

    from pipeline.dask_runner import is_dask
    from pipeline.incremental import plan as plan_inputs
    from pipeline.load import run_summary
    from pipeline.publish import gates as quality_gates
    from pipeline.publish.lock import out_dir_lock
    from pipeline.publish.remote import stage
    from pipeline.publish.writer import new_run_id
    from pipeline.sources.remote import exists_dir, local_path, plan_url

    log = get_run_logger()
    ctx = FlowRunContext.get()
    on_dask = ctx is not None and is_dask(ctx.task_runner)
    raw_local = local_path(raw_dir)
    raw = Path(raw_local) if raw_local is not None else None
    if not (raw.is_dir() if raw is not None else exists_dir(str(raw_dir))):
        raise UsageError(f"raw folder not found: {raw_dir}")
    if batch_size < 1 or workers < 1:
        raise UsageError("batch_size and workers must be at least 1")
    config = quality_gates.load_config(gates, cwd=Path.cwd())
    run_id = new_run_id()
    out, staging = stage(str(out_dir))  # a URL: a local copy of its latest version, uploaded below
    with out_dir_lock(out, run_id=run_id, wait=wait):
        the_plan = plan_inputs(raw, out, full=full) if raw is not None else plan_url(str(raw_dir), full=full)
        paths = the_plan.to_parse
        batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
        procs = max(1, min(workers, len(batches)))
        log.info(
            "discover: %d pages under %s -> %d to parse in %d batch%s of up to %d, %s",
            the_plan.inputs, raw_dir, len(paths), len(batches), _es(len(batches)), batch_size,
            "on Dask" if on_dask else f"{procs} process{_es(procs)}",
        )  # fmt: skip
        log.info("%s", the_plan.describe())

        with spool() as folder:
            files = [str(folder / f"batch-{i:06d}.pickle") for i in range(len(batches))]
            with _shared_pool(1 if on_dask else workers, len(batches)) as pool:
                spool_to = unmapped(None) if on_dask else files
                futures = parse_batch.map(batches, unmapped(str(raw or raw_dir)), unmapped(pool), spool_to)
                done = parsed = 0
                _report_progress(0, len(paths))
                for i, file in enumerate(files):  # in order: the pool runs the batches in about that order
                    out_i = futures[i].result()
                    futures[i] = None  # type: ignore[call-overload]  # drop the future: it holds the result
                    batch = out_i if isinstance(out_i, dict) else spool_batch(out_i, file)  # Dask: spool here
                    del out_i
                    done, parsed = done + batch["results"], parsed + batch["records"]
                    _report_progress(done, len(paths))
            log.info("parse: %d records, %d rejects", parsed, done - parsed)

            # quote: Prefect would otherwise walk the plan and the config looking for futures
            try:
                manifest: Manifest = publish_results(  # type: ignore[call-overload]
                    quote(files), str(out), the_plan.inputs, run_id, quote(the_plan), keep, quote(config),
                    force,
                )  # fmt: skip
            except quality_gates.GateFailed as exc:
                md = quality_gates.quality_markdown(run_id, exc.results, published=False)
                create_markdown_artifact(md, key=QUALITY_KEY, description="procpipe quality gates")
                log.error("gates: %s", exc)
                raise
    where = staging.upload(manifest.run_id) if staging else Path(out_dir) / "versions" / manifest.run_id
    c = manifest.counts
    log.info(
        "publish: %d records, %d rejects, %d duplicate%s folded -> %s",
        c.records, c.rejects, c.duplicates, "" if c.duplicates == 1 else "s", where,
    )  # fmt: skip

    version = out / "versions" / manifest.run_id
    if manifest.changes is not None:
        ch = manifest.changes
        log.info(
            "changes: %d added, %d removed, %d changed, %d unchanged against %s",
            ch["added"], ch["removed"], ch["changed"], ch["unchanged"],
            manifest.previous_run_id or "nothing (first version)",
        )  # fmt: skip
        md = (version / "changes.md").read_text(encoding="utf-8")
        create_markdown_artifact(md, key=CHANGES_KEY, description="procpipe changes against the last version")
    gate_results = manifest.gates or []
    failed = [r["gate"] for r in gate_results if not r["passed"]]
    log.info("gates: %s", f"FAILED {', '.join(failed)}, published with --force" if failed else "passed")
    md = quality_gates.quality_markdown(manifest.run_id, gate_results)
    create_markdown_artifact(md, key=QUALITY_KEY, description="procpipe quality gates")

    summary = run_summary(out, manifest.run_id)
    create_table_artifact(table=summary_table(summary), key=SUMMARY_KEY, description="procpipe run summary")
    create_markdown_artifact(summary_markdown(summary), key=REPORT_KEY, description="procpipe run report")
    keys = [SUMMARY_KEY, REPORT_KEY, QUALITY_KEY] + ([CHANGES_KEY] if manifest.changes is not None else [])
    log.info("summary: artifacts %s", ", ".join(keys))
    if staging:
        staging.close()
    return manifest
