"""Prefect flows: the main job (raw pages -> published version) arranged as batched tasks.

The flow is thin: the work is done by plain functions (``discover``, ``process_batch``, ``publish``)
that run without Prefect too (``pipeline.process.run_local``). What Prefect adds here: one task per
``batches_per_task`` (5) batches of ``batch_size`` (200) pages (never one per page: a task run costs
~5 ms here and 40-50 ms of the API server's CPU), one retry per task (re-running only its batches
that failed), a publish task, stage logs and a run-summary artifact.

Parsing uses both cores without ``ProcessPoolTaskRunner`` (whose workers each import Prefect, ~9 s):
the batch tasks run on the default thread runner and hand their batches to one plain
``ProcessPoolExecutor`` per flow run, forked from a fork server that has the parser imported
(``pipeline.process.pool_context``). A worker that dies (a crash inside a C extension) breaks the
pool: the pool is replaced, and the batch it was running is re-run alone in a fresh process; if it
kills that one too, its pages become rejects ("worker process failed") and the run goes on.

Publishing runs while the pages are parsed, as in ``run_local``: the publish task reads the batches
in batch order as they finish (``_stream``), so the run ends soon after its last batch. Memory stays
flat with the number of pages: each worker writes its batch's results to a file in a private
temporary folder (``pipeline.process.process_batch_to_file``) and returns only the path and counts;
publishing loads one batch file at a time and deletes it. On Dask the batch runs on a worker that
may not see the flow's disk, so its results come back in memory and are streamed from the future
(released once read). The folder is removed when the run ends, published or not.

A head start (``_HeadStart``): calling ``process`` with the default task runner and local folders
first starts, in the background, what does not need Prefect: the plan (discovery and hashing), the
worker pool and the first batches (on all workers but one: the temporary server Prefect starts
meanwhile needs a core for seconds). The flow body takes that work over if nothing changed in between
(the out folder's current version is the one planned against; checked under the run's lock), else
discards it and plans again. A flow run started any other way (a deployment, ``with_options`` with
another runner) simply does the work in its body.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_any
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePath
from typing import Any

from prefect import Flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote, unmapped

from pipeline.errors import UsageError
from pipeline.process import (
    Spooled,
    load_spool,
    pool_context,
    process_batch,
    process_batch_to_file,
    read_spool,
    reject_result,
    spool_batch,
)
from pipeline.sources.remote import is_url, local_path, process_batch_url
from schemas import Manifest

__all__ = ["process", "parse_progress", "read_spool", "spool_batch", "summary_markdown", "summary_table"]

SUMMARY_KEY = "procpipe-run-summary"
REPORT_KEY = "procpipe-run-report"
QUALITY_KEY = "procpipe-quality"
CHANGES_KEY = "procpipe-changes"

Result = dict[str, Any]
_log = logging.getLogger(__name__)


class _Pool:
    """A process pool shared by the batch tasks of one flow run; replaced once when a worker dies.

    Each batch runs as ``process_batch_to_file`` in a worker: the worker writes the results to the
    batch's spool file and the task gets back only the path and counts. Batches submitted before
    the flow run started (``submit_early``, the head start) are taken over by their task."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=pool_context())
        self._early: dict[str, tuple[ProcessPoolExecutor, Future[Spooled]]] = {}

    @property
    def executor(self) -> ProcessPoolExecutor:
        """The pool's current executor (a new one after a worker died)."""
        with self._lock:
            return self._executor

    def submit_early(self, batch: list[str], raw_dir: str, spool_to: str) -> Future[Spooled]:
        """Start a batch now; the task that later runs it (same spool file) takes this future over."""
        with self._lock:
            future = _submit(self._executor, batch, raw_dir, spool_to)
            self._early[spool_to] = (self._executor, future)
        return future

    def start(self, batch: list[str], raw_dir: str, spool_to: str) -> _Started:
        """Start a batch (or take over the one started early for the same spool file); ``finish`` it."""
        with self._lock:
            early = self._early.pop(spool_to, None)
            if early is not None:
                return early
            try:
                return self._executor, _submit(self._executor, batch, raw_dir, spool_to)
            except BrokenProcessPool as exc:  # broken before this batch: ``finish`` replaces it
                broken: Future[Spooled] = Future()
                broken.set_exception(exc)
                return self._executor, broken

    def finish(self, started: _Started, batch: list[str], raw_dir: str, spool_to: str) -> Spooled:
        """The started batch's spool file and counts; re-run alone if its worker died."""
        executor, future = started
        try:
            return future.result()
        except BrokenProcessPool:
            self._replace(executor)
            return _alone(batch, raw_dir, spool_to)

    def run(self, batch: list[str], raw_dir: str, spool_to: str) -> Spooled:
        return self.finish(self.start(batch, raw_dir, spool_to), batch, raw_dir, spool_to)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:  # the first task to notice replaces it for all
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=pool_context())

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers once their batches are done (``wait=False``: without waiting for them),
        cancelling the batches not started."""
        with self._lock:
            early, self._early = self._early, {}
        for _, future in early.values():  # never taken over (the run failed or was discarded)
            future.cancel()
        self._executor.shutdown(wait=wait, cancel_futures=True)


_Started = tuple[ProcessPoolExecutor, "Future[Spooled]"]


def _submit(executor: ProcessPoolExecutor, batch: list[str], raw_dir: str, spool_to: str) -> Future[Spooled]:
    return executor.submit(process_batch_to_file, _batch_fn(raw_dir), batch, raw_dir, spool_to)


def _alone(batch: list[str], raw_dir: str, spool_to: str) -> Spooled:
    """Run one batch in a fresh one-worker pool; its pages become rejects if that worker dies too."""
    with ProcessPoolExecutor(max_workers=1, mp_context=pool_context()) as solo:
        try:
            return _submit(solo, batch, raw_dir, spool_to).result()
        except Exception as exc:  # noqa: BLE001 - a worker crash must not fail the run
            reason = f"internal error: worker process failed: {type(exc).__name__}"
            return spool_batch([reject_result(p, "parse", reason) for p in batch], spool_to)


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


def _new_spool_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="procpipe-spool-"))


def _spool_name(i: int) -> str:
    return f"batch-{i:06d}.pickle"


def _batches(paths: list[str], size: int) -> list[list[str]]:
    return [paths[i : i + size] for i in range(0, len(paths), size)]


# ---------------------------------------------------------------- head start


class _HeadStart:
    """What one call of ``process`` starts before Prefect runs its body: the plan, the pool and the
    first batches (in batch order, written to ``folder``).

    Background threads do it while the calling thread waits for Prefect (its temporary server, the
    flow run's creation). When every page will be parsed (``full``, or no version published yet),
    batches start from the discovered pages at once, while the plan hashes them; otherwise they
    start from the plan. With ``spare_core`` (a temporary server is starting) one worker fewer is
    kept busy. ``claim`` waits for the plan and stops starting batches; ``close`` releases whatever
    the flow body did not take over."""

    def __init__(
        self, raw: Path, out: Path, *, full: bool, batch_size: int, workers: int, spare_core: bool = False
    ) -> None:
        self.key = (str(raw), str(out), full, batch_size, workers)
        self.raw, self.out, self.full = raw, out, full
        self.batch_size, self.workers, self.spare_core = batch_size, workers, spare_core
        self.plan: Any = None  # pipeline.incremental.Plan once made
        self.planned_against: Path | None = None  # out's current version when the plan was made
        self.pool: _Pool | None = None
        self.folder: Path | None = _new_spool_folder()
        self.early = 0  # batches started
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        self._thread = threading.Thread(target=self._run, name="procpipe-head-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from pipeline.incremental import plan as plan_inputs
            from pipeline.publish.lock import is_locked
            from pipeline.publish.writer import latest_version
            from pipeline.sources.files import discover_relative

            if is_locked(self.out):  # another run holds the folder: the flow plans under the lock
                return
            self.planned_against = latest_version(self.out)
            if self.full or self.planned_against is None:  # every page will be parsed: start now
                listed = discover_relative(self.raw)
                self._feed(listed)
                plan = plan_inputs(self.raw, self.out, full=self.full, paths=listed)  # no second listing
            else:
                plan = plan_inputs(self.raw, self.out, full=self.full)
                self._feed(plan.to_parse)
            self.plan = plan
        except Exception:  # noqa: BLE001 - the flow body plans again
            _log.debug("head start failed", exc_info=True)

    def _feed(self, paths: list[str]) -> None:
        """Start the batches of ``paths`` in a thread of their own, a few at a time, until ``claim``."""
        batches = _batches(paths, self.batch_size)
        size = min(self.workers, len(batches))
        if size <= 1 or self.folder is None:
            return
        self.pool = _Pool(size)
        self._feeder = threading.Thread(
            target=self._submit_batches, args=(self.pool, self.folder, batches, size), daemon=True,
            name="procpipe-head-start-batches",
        )  # fmt: skip
        self._feeder.start()

    def _submit_batches(self, pool: _Pool, folder: Path, batches: list[list[str]], size: int) -> None:
        limit = max(1, size - 1) if self.spare_core else size  # in flight at once
        in_flight: set[Future[Spooled]] = set()
        try:
            for i, batch in enumerate(batches):
                while len(in_flight) >= limit and not self._stop.is_set():
                    in_flight = wait_any(in_flight, timeout=0.1, return_when=FIRST_COMPLETED).not_done
                if self._stop.is_set():
                    return
                in_flight.add(pool.submit_early(batch, str(self.raw), str(folder / _spool_name(i))))
                self.early = i + 1
        except Exception:  # noqa: BLE001 - e.g. a broken pool: the tasks run the rest
            _log.debug("head start stopped starting batches", exc_info=True)

    def claim(self) -> _HeadStart:
        """Wait for the plan, then stop starting batches (the flow's tasks take over)."""
        self._thread.join()
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join()
        return self

    def still_valid(self) -> bool:
        """Whether the plan still holds: made, and ``out``'s current version is the one it was made
        against (called under the run's lock, so nothing changes it any more)."""
        from pipeline.publish.writer import latest_version

        return self.plan is not None and latest_version(self.out) == self.planned_against

    def hand_over(self) -> tuple[_Pool | None, Path]:
        """The pool and the spool folder, now owned by the caller."""
        assert self.folder is not None
        pool, folder = self.pool, self.folder
        self.pool, self.folder = None, None
        return pool, folder

    def close(self) -> None:
        """Stop, then release the pool and the folder unless the flow took them over."""
        self.claim()
        if self.pool is not None:
            self.pool.shutdown(wait=False)  # discarded work: its files go with the folder
            self.pool = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


_HEAD_STARTS: list[_HeadStart] = []
_HEAD_STARTS_LOCK = threading.Lock()


def _begin_head_start(
    flow: Flow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, spare_core: bool = False
) -> _HeadStart | None:
    """A head start for this call of the ``process`` flow, or None (another runner, a URL, bad arguments:
    the flow body then does, or refuses, everything itself)."""
    if type(flow.task_runner) is not ThreadPoolTaskRunner:
        return None
    try:
        bound = inspect.signature(flow.fn).bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    a = bound.arguments
    raw = local_path(a["raw_dir"]) if isinstance(a["raw_dir"], str | Path) else None
    out = local_path(a["out_dir"]) if isinstance(a["out_dir"], str | Path) else None
    size, workers, full = a["batch_size"], a["workers"], a["full"]
    if raw is None or out is None or not Path(raw).is_dir() or Path(out).is_file():
        return None
    if type(size) is not int or type(workers) is not int or size < 1 or workers < 1 or type(full) is not bool:
        return None
    head = _HeadStart(
        Path(raw), Path(out), full=full, batch_size=size, workers=workers, spare_core=spare_core
    )
    with _HEAD_STARTS_LOCK:
        _HEAD_STARTS.append(head)
    return head


def _claim_head_start(raw: Path, out: Path, full: bool, batch_size: int, workers: int) -> _HeadStart | None:
    """The head start begun for these arguments (stopped, its plan made), or None."""
    key = (str(raw), str(out), full, batch_size, workers)
    with _HEAD_STARTS_LOCK:
        head = next((h for h in _HEAD_STARTS if h.key == key), None)
        if head is not None:
            _HEAD_STARTS.remove(head)
    return head.claim() if head is not None else None


class _TemporaryServer:
    """Prefect's temporary API server for this process, launched as Prefect launches it
    (``prefect.server.api.server.SubprocessASGIServer``: the same uvicorn command and environment)
    but without importing the server's code here first: that import costs the calling process ~2 s
    of CPU before the server process even starts, on the critical path of every one-off run.

    Used only when Prefect would start its own (no API URL configured, temporary servers allowed,
    none started by Prefect in this process, not inside a flow or task run); one per process,
    stopped at exit like Prefect's."""

    _current: _TemporaryServer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self._launch()
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @classmethod
    def for_this_call(cls) -> _TemporaryServer | None:
        """The process's temporary server (launched now if need be, maybe not ready yet), or None
        when Prefect has an API to talk to already."""
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled or _PREFECT_SERVER_MODULE in sys.modules:
            return None
        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            return None
        with cls._lock:
            current = cls._current
            if current is None or current.proc is None or current.proc.poll() is not None:
                current = cls._current = cls()
            return current

    def _launch(self) -> None:
        import prefect
        from prefect.settings import get_current_settings

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        _log.info("starting a temporary Prefect server on %s", self.url)
        server_env = {
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env = {
            **_TEMPORARY_SERVER_DEFAULTS,
            **os.environ,
            **server_env,
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "error", "--lifespan", "on"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=env)

    def wait_ready(self) -> None:
        """Wait until the server answers ``/health`` (Prefect's start-up timeout applies)."""
        import httpx
        from prefect.settings import get_current_settings

        with self._lock:
            if self.ready:
                return
            limit = time.monotonic() + get_current_settings().server.ephemeral.startup_timeout_seconds
            with httpx.Client() as client:
                while time.monotonic() < limit:
                    assert self.proc is not None
                    code = self.proc.poll()
                    if code == 3:  # the port was taken meanwhile: another one
                        self._launch()
                        continue
                    if code is not None:
                        raise RuntimeError(f"temporary Prefect server exited with code {code}")
                    try:
                        if client.get(f"{self.url}/health").status_code == 200:
                            self.ready = True
                            return
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
            self.stop()
            raise RuntimeError("Timed out while attempting to connect to the temporary Prefect API server.")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_PREFECT_SERVER_MODULE = "prefect.server.api.server"

#: settings of the temporary server unless set in the environment or the Prefect profile. Automations
#: (the triggers service and its actions) are off: the server lives for one run, yet would evaluate
#: every event of it and start an HTTP client for actions (~0.5-1 s of CPU on the 2 cores that parse).
_TEMPORARY_SERVER_DEFAULTS = {"PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}


class _HeadStartFlow(Flow[Any, Any]):
    """A flow whose call begins a ``_HeadStart`` before Prefect starts the run (``process`` only),
    and launches the temporary server itself when one is needed (``_TemporaryServer``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 - Flow.__call__
        server = _TemporaryServer.for_this_call()
        params = {k: v for k, v in kwargs.items() if k not in _CALL_OPTIONS}
        head = _begin_head_start(self, args, params, spare_core=server is not None and not server.ready)
        try:
            if server is None:
                return super().__call__(*args, **kwargs)
            from prefect.settings import (
                PREFECT_API_URL,
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                PREFECT_UI_URL,
                temporary_settings,
            )

            server.wait_ready()
            # no UI URL: the temporary server serves no UI (Prefect's own has none to link to either).
            # No heartbeats unless the user sets their frequency: they let automations on the server
            # spot a crashed run, but this server ends with this process; and the engine's wait for
            # the heartbeat thread (which sleeps in 1 s steps) added up to 1 s to the end of each run.
            with temporary_settings(
                updates={PREFECT_API_URL: server.url, PREFECT_UI_URL: ""},
                set_defaults={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None},
            ):
                return super().__call__(*args, **kwargs)
        finally:
            if head is not None:
                with _HEAD_STARTS_LOCK:
                    if head in _HEAD_STARTS:
                        _HEAD_STARTS.remove(head)
                head.close()

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """As Prefect's, without importing FastAPI (~0.6 s) for plain values (text, numbers, paths)."""
        if all(v is None or type(v) in _PLAIN for v in parameters.values()):
            return {k: str(v) if isinstance(v, PurePath) else v for k, v in parameters.items()}
        return super().serialize_parameters(parameters)

    def with_options(self, **kwargs: Any) -> Any:  # noqa: D102 - Flow.with_options
        new = super().with_options(**kwargs)
        new.__class__ = type(self)
        return new


#: parameter types Prefect's encoder would pass through (paths become text)
_PLAIN = (str, int, float, bool, Path, type(Path()))

#: keyword arguments of ``Flow.__call__`` that are not flow parameters
_CALL_OPTIONS = ("return_state", "wait_for")


def _head_start_flow(**options: Any) -> Callable[[Callable[..., Manifest]], _HeadStartFlow]:
    def wrap(fn: Callable[..., Manifest]) -> _HeadStartFlow:
        return _HeadStartFlow(fn=fn, **options)

    return wrap


# ---------------------------------------------------------------- tasks


#: pool batches per Prefect task by default. A task run costs ~5 ms in this process and 40-50 ms of
#: the API server's CPU (its task-run recorder writes each state change to the database), on the same
#: two cores as the parsing; twenty batches of 200 pages make 5 task runs at 20,000 pages instead of
#: 100 (against five batches a task: ~1 s less of the server's CPU and 0.5-1.4 s less of this
#: process's at 20,000 pages). A task still starts all its batches at once on the pool, and publish
#: reads each batch as soon as it is done, so parallelism and memory do not depend on it.
BATCHES_PER_TASK = 20


class _RunBatches:
    """The batches of one flow run as its tasks see them: the shared pool (None: a task parses in its
    own thread) and a slot per batch (by spool file), set when that batch's file is written.

    The slots let ``publish`` read each batch as soon as it is done, in batch order, while the rest of
    its task's batches still parse; and a retried task re-runs only its batches without a result."""

    def __init__(self, pool: _Pool | None, spool_paths: list[str]) -> None:
        self.pool = pool
        self.slots: dict[str, Future[Spooled]] = {p: Future() for p in spool_paths}

    def parse(self, batches: list[list[str]], raw_dir: str, spool_to: list[str]) -> list[Spooled]:
        """Parse ``batches`` into their spool files (all started at once on the pool); raises the
        first batch's error once the others are done."""
        todo = [(b, p) for b, p in zip(batches, spool_to, strict=True) if not self.slots[p].done()]
        error: Exception | None = None
        if self.pool is not None:
            pool = self.pool
            started = [(b, p, pool.start(b, raw_dir, p)) for b, p in todo]
            for b, p, handle in started:  # every started batch is awaited: none left writing its file
                try:
                    self._done(p, pool.finish(handle, b, raw_dir, p))
                except Exception as exc:  # noqa: BLE001 - raised below, after the others
                    error = error or exc
        else:
            for b, p in todo:
                self._done(p, process_batch_to_file(_batch_fn(raw_dir), b, raw_dir, p))
        if error is not None:
            raise error
        return [self.slots[p].result() for p in spool_to]

    def _done(self, path: str, spooled: Spooled) -> None:
        slot = self.slots[path]
        if not slot.done():
            slot.set_result(spooled)


# the runs' batches by token: a task parameter must be plain text, not a pool
_RUNS: dict[str, _RunBatches] = {}


@contextmanager
def _run_batches(workers: int, spool_paths: list[str], pool: _Pool | None = None) -> Iterator[str]:
    """A token for this run's batches (``_RunBatches``) on ``pool``, else a new pool, or none when one
    process is enough (one batch, one worker); the pool is shut down on the way out."""
    size = min(workers, len(spool_paths))
    if pool is None and size > 1:
        pool = _Pool(size)
    token = uuid.uuid4().hex
    _RUNS[token] = _RunBatches(pool, spool_paths)
    try:
        yield token
    finally:
        _RUNS.pop(token)
        if pool is not None:
            pool.shutdown()


@task(name="parse-batches", retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE, persist_result=False)
def parse_batches(
    batches: list[list[str]], raw_dir: str, run: str | None = None, spool_to: list[str] | None = None
) -> list[Spooled] | list[list[Result]]:
    """Parse batches of pages (paths relative to ``raw_dir``): per batch, one record or reject dict a page.

    In a local run (``run``: the flow run's batches, ``spool_to``: a file per batch) the results go
    to the batches' spool files, written by the pool's workers, and only their paths and counts come
    back; a retry re-runs only the batches that have none. On Dask (no ``run``) the task runs in the
    Dask worker and returns the results themselves."""
    if run is None:
        fn = _batch_fn(raw_dir)
        return [fn(paths, raw_dir) for paths in batches]
    batches_of_run = _RUNS.get(run)
    if batches_of_run is None:  # the run is over (it failed): do not parse for nothing
        raise RuntimeError("the flow run ended before this batch ran")
    if spool_to is None or len(spool_to) != len(batches):
        raise ValueError("a local run's batches need one spool file each")
    return batches_of_run.parse(batches, raw_dir, spool_to)


def _groups(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _task_done(future: Any) -> Future[Any] | None:
    """The thread runner's own future of a task (done when the task is final, retries included)."""
    wrapped = getattr(future, "wrapped_future", None)
    return wrapped if isinstance(wrapped, Future) else None


def _stream(
    futures: list[Any], spool_groups: list[list[str]] | None, run: str | None, total: int, log: Any
) -> Iterator[Result]:
    """The batches' results in batch order, each batch as soon as it is done (its slot is set, maybe
    before the rest of its task): one batch in memory at a time (a spool file is loaded, then deleted;
    a Dask future is released once read). Raises if a task failed (after its retry)."""
    done = parsed = 0
    slots = _RUNS[run].slots if run is not None else {}
    _report_progress(0, total)
    for i, future in enumerate(futures):
        if spool_groups is None:  # Dask: the results themselves
            outs: list[Any] = future.result()
            futures[i] = None  # drop the future: it holds the results
        else:
            outs = spool_groups[i]
        for j in range(len(outs)):
            out = outs[j] if spool_groups is None else _slot_result(slots[outs[j]], future)
            if spool_groups is None:
                outs[j] = None
            batch, n, records = _load(out)
            del out
            done, parsed = done + n, parsed + records
            _report_progress(done, total)
            yield from batch
            del batch
    for future in futures:
        if future is not None:
            future.result()  # every batch was read, so its task succeeded; this waits for it to end
    log.info("parse: %d records, %d rejects", parsed, done - parsed)


def _slot_result(slot: Future[Spooled], task_future: Any) -> Spooled:
    """A batch's result once its slot is set, or the error of its task if that ends without setting it."""
    task_done = _task_done(task_future)
    if not slot.done() and task_done is not None:
        wait_any([slot, task_done], return_when=FIRST_COMPLETED)
    if not slot.done():
        task_future.result()  # raises: the task failed (after its retry)
    return slot.result()


def _load(out: Spooled | list[Result]) -> tuple[list[Result], int, int]:
    """One batch's results, count and records (a spool file is loaded, then deleted)."""
    if isinstance(out, dict):
        batch = load_spool(out["path"])
        Path(out["path"]).unlink(missing_ok=True)
        return batch, out["results"], out["records"]
    return out, len(out), sum("record" in r for r in out)


@task(name="publish", cache_policy=NO_CACHE, persist_result=False)
def publish_results(
    results: Any,
    out_dir: str,
    inputs: int,
    run_id: str | None = None,
    plan: Any = None,
    keep: int | None = None,
    gates: Any = None,
    force: bool = False,
    run: str | None = None,
) -> Manifest:
    """Write ``results`` (an iterable of result dicts in batch order, consumed while the batches are
    still being parsed; plus the results ``plan`` reuses) as a new version of ``out_dir``, make it
    ``latest``. The tables' chunks are built in the run's parsing pool (``run``, a token of
    ``_RUNS``), idle once every batch is parsed, rather than in processes started for them."""
    from pipeline.publish import publish

    batches = _RUNS.get(run) if run else None
    shared = batches.pool if batches is not None else None
    return publish(
        results, Path(out_dir), inputs=inputs, run_id=run_id, plan=plan, keep=keep, gates=gates, force=force,
        executor=shared.executor if shared is not None else None,
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


@_head_start_flow(name="process", log_prints=False)
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
    batches_per_task: int = BATCHES_PER_TASK,
) -> Manifest:
    """Every page under ``raw_dir`` into a new published version of ``out_dir``; returns its manifest.

    Incremental (``pipeline.incremental``): pages unchanged since the current version reuse their
    results (``full``: parse everything). ``keep`` versions are kept (10), ``wait`` seconds are spent
    waiting for another run's lock on ``out_dir``, ``gates`` names a quality gates file (default:
    ``procpipe.toml`` here, else the defaults) and ``force`` publishes past a failed gate. Pages are
    parsed in batches of ``batch_size`` on ``workers`` processes, ``batches_per_task`` batches to a
    Prefect task.

    On a ``DaskTaskRunner`` (``pipeline.dask_runner``) the batches run on the Dask workers, one batch
    to a task. Either
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
    from pipeline.sources.remote import exists_dir, plan_url

    log = get_run_logger()
    ctx = FlowRunContext.get()
    on_dask = ctx is not None and is_dask(ctx.task_runner)
    raw_local = local_path(raw_dir)
    raw = Path(raw_local) if raw_local is not None else None
    if not (raw.is_dir() if raw is not None else exists_dir(str(raw_dir))):
        raise UsageError(f"raw folder not found: {raw_dir}")
    if batch_size < 1 or workers < 1 or batches_per_task < 1:
        raise UsageError("batch_size, workers and batches_per_task must be at least 1")
    config = quality_gates.load_config(gates, cwd=Path.cwd())
    run_id = new_run_id()
    out, staging = stage(str(out_dir))  # a URL: a local copy of its latest version, uploaded below
    head = _claim_head_start(raw, out, full, batch_size, workers) if raw is not None and not staging else None
    with out_dir_lock(out, run_id=run_id, wait=wait), ExitStack() as cleanup:
        if head is not None and head.still_valid():
            the_plan = head.plan
            early_pool, folder = head.hand_over()
        else:
            if head is not None:
                head.close()
            head, early_pool, folder = None, None, _new_spool_folder()
            the_plan = (
                plan_inputs(raw, out, full=full) if raw is not None else plan_url(str(raw_dir), full=full)
            )
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        paths = the_plan.to_parse
        batches = _batches(paths, batch_size)
        spools = [str(folder / _spool_name(i)) for i in range(len(batches))]
        if on_dask:  # every batch a task of its own, which Dask spreads over its workers
            run, per_task = None, 1
        else:
            run, per_task = cleanup.enter_context(_run_batches(workers, spools, early_pool)), batches_per_task
        groups = _groups(batches, per_task)
        spool_groups = None if on_dask else _groups(spools, per_task)
        procs = max(1, min(workers, len(batches)))
        log.info(
            "discover: %d pages under %s -> %d to parse in %d batch%s of up to %d (%d task%s), %s%s",
            the_plan.inputs, raw_dir, len(paths), len(batches), _es(len(batches)), batch_size,
            len(groups), "" if len(groups) == 1 else "s",
            "on Dask" if on_dask else f"{procs} process{_es(procs)}",
            f" ({head.early} started while Prefect started)" if head is not None and head.early else "",
        )  # fmt: skip
        log.info("%s", the_plan.describe())

        # locally each group is quoted: Prefect would otherwise walk every path of it, three times per
        # task run (~0.02 ms of the parent's CPU a page); the task gets the plain list (the Dask
        # runner hands the quote itself to the task, so there the groups go plain)
        futures = parse_batches.map(
            groups if on_dask else [quote(g) for g in groups],
            unmapped(str(raw or raw_dir)),
            unmapped(run),
            [quote(s) for s in spool_groups] if spool_groups is not None else unmapped(None),
        )
        # quote: Prefect would otherwise walk the stream, the plan and the config looking for futures
        try:
            manifest: Manifest = publish_results(  # type: ignore[call-overload]
                quote(_stream(list(futures), spool_groups, run, len(paths), log)), str(out),
                the_plan.inputs, run_id, quote(the_plan), keep, quote(config), force, run,
            )  # fmt: skip
        except quality_gates.GateFailed as exc:
            md = quality_gates.quality_markdown(run_id, exc.results, published=False)
            create_markdown_artifact(md, key=QUALITY_KEY, description="procpipe quality gates")
            log.error("gates: %s", exc)
            raise
        del futures
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
