"""The batch worker (raw pages -> record or reject dicts) and the Prefect-free local run.

``process_batch`` is what a worker process runs: it imports only light modules (no Prefect, no
pandas, no pyarrow) so that workers start fast, and it never raises for one bad page: every input
path yields exactly one compact, JSON-able result, ``{"record": {...}}`` or ``{"reject": {...}}``.

``run_local`` is the whole job without Prefect (tests, benchmarks): discover, batch, parse over a
process pool, publish.

``spool_batch`` / ``read_spool`` are the flow's batch files (``pipeline.flows``): a worker process
runs ``process_batch_to_file`` and writes its batch's results to a file itself, so the parent
receives only the path and counts and unpickles each batch once, when it publishes it.
"""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import shutil
import tempfile
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pipeline.api import parse_page
from pipeline.errors import RejectedPage
from pipeline.limits import Limits, current_limits
from pipeline.sources.files import discover_relative, max_page_bytes, read_page, relative_path
from schemas.models import ProcedureRecord, Reject, Stage

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from schemas.models import Manifest

_STAGES: tuple[str, ...] = get_args(Stage)
_dump = ProcedureRecord.__pydantic_serializer__.to_python
_MAX_REASON = 300


def _one_line(text: str, limit: int = _MAX_REASON) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def reject_result(
    source: str,
    stage: str,
    reason: str,
    *,
    detail: str | None = None,
    url: str | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """A ``{"reject": ...}`` result, validated against ``schemas.Reject``."""
    reject = Reject(
        source=source,
        stage=stage if stage in _STAGES else "parse",  # type: ignore[arg-type]
        reason=_one_line(reason) or "rejected",
        detail=detail,
        url=url,
        sha256=sha256,
    )
    return {"reject": reject.model_dump(mode="json")}


def _internal(exc: BaseException) -> tuple[str, str]:
    """Reason and detail for an unexpected exception: its type and message, and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"internal error: {type(exc).__name__}: {_one_line(str(exc), 200)}", where


def process_page(path: str, raw_dir: Path, *, mode: str = "json") -> dict[str, Any]:
    """One input path (relative to ``raw_dir`` or absolute) -> one record or reject result.

    The record is ``model_dump(mode=mode)``'s data: JSON-able by default; ``"python"`` (datetimes
    as datetimes) for ``prepare_record``, which validates that form for less than the JSON one."""
    return _page(path, Path(raw_dir), mode, None, None)


def _page(path: str, root: Path, mode: str, limits: Limits | None, max_bytes: int | None) -> dict[str, Any]:
    """``process_page`` with the batch's limits and page size limit (None: read them now)."""
    given = Path(path)
    full = given if given.is_absolute() else root / given
    rel = relative_path(full, root)
    source = rel or str(path)
    try:
        page = read_page(full, root, max_bytes=max_bytes, rel=rel)
    except RejectedPage as exc:
        return reject_result(source, exc.stage, exc.reason, detail=exc.detail)
    except Exception as exc:  # noqa: BLE001 - one bad page must not lose the batch
        reason, where = _internal(exc)
        return reject_result(source, "read", reason, detail=where)
    meta = page.meta
    url = meta.get("url")
    sha = meta.get("sha256")
    try:
        record = parse_page(page.content, url=url, path=page.path, meta=meta, limits=limits)
    except RejectedPage as exc:
        return reject_result(page.path, exc.stage, exc.reason, detail=exc.detail, url=url, sha256=sha)
    except Exception as exc:  # noqa: BLE001
        reason, where = _internal(exc)
        return reject_result(page.path, "parse", reason, detail=where, url=url, sha256=sha)
    data = _dump(record, mode=mode)  # record.model_dump(mode=mode), without its wrapper
    if not data["source"].get("path"):
        data["source"]["path"] = page.path  # dedupe's tie-break needs the path
    return {"record": data}


#: batches this process has begun, up to the last one that freezes (``_freeze_start_objects``)
_batches = 0


def _freeze_start_objects() -> None:
    """In a worker process, before its first and its second batch: ``gc.freeze()`` the objects alive
    then (the parser it was forked with, then what the first batch imported and cached), so that full
    collections stop scanning them again and again (~0.03 ms a page) and do not touch, hence copy,
    the memory pages shared with the fork server. The second time after a full collection, so that
    no garbage of the first batch is frozen. Not in the main process: there, objects frozen now
    would never be collected if they became garbage later."""
    global _batches
    if _batches < 2:
        _batches += 1
        if multiprocessing.parent_process() is not None:
            if _batches == 2:
                gc.collect()
            gc.freeze()


def process_batch(paths: list[str], raw_dir: str, stage: str | None = None) -> list[dict[str, Any]]:
    """Parse a batch of pages; one result per path, in order, and never an exception for a bad page.

    With ``stage`` (a folder; made when needed) each record comes prepared for publishing instead
    (``pipeline.publish.prepare``: validated, dumped, digested, its app file written into ``stage``),
    so that this work runs in the worker, not in the one process that publishes."""
    _freeze_start_objects()
    root = Path(raw_dir)
    if stage is not None:
        from pipeline.publish.prepare import prepare_record

        staged = Path(stage)
    # read once per batch, not per page (both come from the environment); a bad limit in the
    # environment is left for each page to meet, as ``parse_page`` would
    max_bytes = max_page_bytes()
    try:
        limits: Limits | None = current_limits()
    except Exception:  # noqa: BLE001
        limits = None
    mode = "json" if stage is None else "python"  # prepare_record validates the python form
    out: list[dict[str, Any]] = []
    for path in paths:
        try:
            result = _page(path, root, mode, limits, max_bytes)
            if stage is not None and "record" in result:
                result = prepare_record(result["record"], staged)
            out.append(result)
        except Exception as exc:  # noqa: BLE001 - e.g. a reject that fails its own validation
            reason, where = _internal(exc)
            out.append(reject_result(str(path), "parse", reason, detail=where))
    return out


#: what a spooled batch comes back as: ``{"path": str, "results": int, "records": int}``
Spooled = dict[str, Any]


def spool_batch(results: list[dict[str, Any]], path: str | Path) -> Spooled:
    """Write one batch's results to ``path``; returns its path and counts.

    Pickle, not JSON: an exact round trip of the result dicts, and the file is private to one run
    (written by its worker or its parent, read back by its parent, then deleted)."""
    with open(path, "wb") as fh:
        pickle.dump(results, fh, protocol=pickle.HIGHEST_PROTOCOL)
    records = sum("record" in r or "prepared" in r for r in results)
    return {"path": str(path), "results": len(results), "records": records}


def load_spool(path: str | Path) -> list[dict[str, Any]]:
    """The results of one spooled batch."""
    with open(path, "rb") as fh:
        batch: list[dict[str, Any]] = pickle.load(fh)  # noqa: S301 - our own file, written by this run
    return batch


def read_spool(paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The results of the spooled batches at ``paths``, in that order, one batch in memory at a time."""
    for path in paths:
        yield from load_spool(path)


#: ``process_batch`` or a twin (``sources.remote.process_batch_url``): ``fn(paths, raw_dir, stage)``
BatchFn = Callable[[list[str], str, "str | None"], list[dict[str, Any]]]


def process_batch_to_file(fn: BatchFn, paths: list[str], raw_dir: str, path: str) -> Spooled:
    """``fn(paths, raw_dir, stage)`` (``process_batch`` or a twin) in a worker, its results written to
    ``path`` by the worker itself: only the path and counts travel back to the parent. The records
    come prepared for publishing, their app files staged in ``stage_folder(path)``."""
    return spool_batch(fn(paths, raw_dir, str(stage_folder(path))), path)


def stage_folder(spool_path: str | Path) -> Path:
    """Where the batches spooled beside ``spool_path`` stage their app files (``json/`` of the
    spool folder: publish moves it into the version, the spool folder goes with the run)."""
    return Path(spool_path).parent / "json"


def pool_context() -> BaseContext:
    """The start method of every worker pool: forkserver, with this module (the parser) preloaded.

    forkserver: workers do not inherit the parent's threads or locks (safe under Prefect and pytest).
    The preload makes the fork server import the parser once; each worker, a fork of it, starts
    with the parser imported (a new pool after a crash too). Without forkserver: spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.process"])  # no effect once the fork server runs
    return ctx


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=pool_context())


def _lost_batch(batch: list[str], exc: BaseException) -> list[dict[str, Any]]:
    reason = f"internal error: worker process failed: {type(exc).__name__}: {_one_line(str(exc), 150)}"
    return [reject_result(p, "parse", reason) for p in batch]


def iter_results(
    batches: list[list[str]], raw_dir: Path, *, workers: int = 2, stage: Path | None = None
) -> Iterator[dict[str, Any]]:
    """Results of ``process_batch`` over ``batches``, in batch order (records prepared for publishing,
    app files staged in ``stage``, when it is given).

    At most ``2 * workers`` batches are in flight, so results do not pile up in memory. A batch whose
    worker dies (e.g. a crash inside a C extension) is retried alone in a fresh process; if it kills
    that one too, its pages become rejects and the run goes on.
    """
    raw = str(raw_dir)
    staged = None if stage is None else str(stage)
    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            yield from process_batch(batch, raw, staged)
        return
    pending: deque[list[str]] = deque(batches)
    in_flight: deque[tuple[list[str], Future[list[dict[str, Any]]]]] = deque()
    executor = _pool(workers)
    try:
        while pending or in_flight:
            while pending and len(in_flight) < 2 * workers:
                batch = pending.popleft()
                in_flight.append((batch, executor.submit(process_batch, batch, raw, staged)))
            batch, future = in_flight.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                executor.shutdown(wait=True, cancel_futures=True)
                suspects = [batch] + [b for b, _ in in_flight]
                in_flight.clear()
                yield from _solo(suspects[0], raw, staged)
                pending.extendleft(reversed(suspects[1:]))
                executor = _pool(workers)
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. results that cannot be pickled
                results = _lost_batch(batch, exc)
            yield from results
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _solo(batch: list[str], raw: str, stage: str | None = None) -> list[dict[str, Any]]:
    """Run one batch in a fresh single-worker pool; its pages become rejects if that worker dies too."""
    with _pool(1) as solo:
        try:
            return solo.submit(process_batch, batch, raw, stage).result()
        except Exception as exc:  # noqa: BLE001
            return _lost_batch(batch, exc)


def run_local(
    raw_dir: Path,
    out_dir: Path,
    *,
    workers: int = 2,
    batch_size: int = 200,
    run_id: str | None = None,
) -> Manifest:
    """The whole job without Prefect: every input under ``raw_dir`` into a new version in ``out_dir``."""
    from pipeline.publish import publish  # pyarrow: only the parent process needs it

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    paths = discover_relative(raw_dir)
    size = max(1, batch_size)
    batches = [paths[i : i + size] for i in range(0, len(paths), size)]
    with staging_folder() as stage:
        results = iter_results(batches, raw_dir, workers=workers, stage=stage)
        return publish(results, out_dir, inputs=len(paths), run_id=run_id)


@contextmanager
def staging_folder() -> Iterator[Path]:
    """A private folder for the app files the workers write (``process_batch``'s ``stage``); publish
    moves them into the version, the folder is removed on the way out."""
    tmp = Path(tempfile.mkdtemp(prefix="procpipe-stage-"))
    try:
        yield tmp / "json"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
