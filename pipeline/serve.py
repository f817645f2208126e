"""Schedules: ``procpipe serve`` runs the refresh on a cron or an interval as a Prefect deployment.

``serve(cron=..., interval=..., config=, raw_dir=, out_dir=)`` serves the ``scheduled-refresh``
flow (below) with ``Flow.serve``: Prefect creates the deployment with its schedule on the API and a
runner in this process starts each scheduled run in a subprocess. ``scheduled-refresh`` runs the
scraper's ``refresh`` flow (scrape every source in ``config``, then process) when the sources file
exists, and with no sources configured simply processes ``raw_dir`` into ``out_dir``.

A deployment needs a Prefect API. With no ``PREFECT_API_URL`` configured (environment or Prefect
profile), ``serve`` starts ``prefect server start`` on 127.0.0.1 (a free port) itself, with its
SQLite database under the project's Prefect home (``$PREFECT_HOME``, else ``./.prefect``) and
analytics off, waits until ``/api/health`` answers, and stops it (the whole process group) when
serving ends: Ctrl-C (SIGINT) or SIGTERM. The server's output goes to ``server.log`` in the Prefect
home. Users with their own server and work pools deploy with ``prefect.yaml`` at the project root
instead (``prefect deploy --all``; see that file).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from pipeline.errors import ProcpipeError

DEPLOYMENT = "procpipe-refresh"
SERVER_LOG = "server.log"
DEFAULT_STARTUP_SECONDS = 120.0


@flow(name="scheduled-refresh", log_prints=False)
def scheduled_refresh(
    config: str = "sources.toml",
    raw_dir: str = "raw",
    out_dir: str = "processed",
    keep: int | None = None,
    gates: str | None = None,
) -> dict[str, Any]:
    """Refresh: scrape the sources in ``config`` then process, or only process when there is none."""
    log = get_run_logger()
    if Path(config).is_file():
        from pipeline.flows_scrape import refresh

        log.info("refresh: sources from %s", config)
        out = refresh(config=config, raw_dir=raw_dir, out_dir=out_dir)
        manifest = out.get("processed")
    else:
        from pipeline.flows import process

        log.info("refresh: no sources file at %s; processing %s into %s", config, raw_dir, out_dir)
        manifest = process(raw_dir, out_dir, keep=keep, gates=gates)
    run_id = getattr(manifest, "run_id", None)
    return {"run_id": run_id, "out_dir": out_dir}


def project_prefect_home() -> Path:
    """``$PREFECT_HOME`` when set, else ``.prefect`` in the working folder (as the Makefile sets it)."""
    return Path(os.environ.get("PREFECT_HOME") or Path.cwd() / ".prefect").resolve()


def configured_api_url() -> str | None:
    """The Prefect API this process would talk to: ``PREFECT_API_URL`` or the active profile's."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import Settings

    url = Settings().api.url
    return str(url) if url else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class LocalServer:
    """``prefect server start`` on 127.0.0.1 in its own process group, stopped as a whole."""

    def __init__(self, home: Path, *, port: int | None = None, ui: bool = True) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.ui = ui
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / SERVER_LOG

    def start(self, timeout: float = DEFAULT_STARTUP_SECONDS) -> None:
        """Start the server and wait until it answers ``/api/health`` (``ProcpipeError`` if it does not)."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("PREFECT_API_URL", None)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="true" if self.ui else "false",
        )
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
               "--port", str(self.port)]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole, spared our Ctrl-C
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _healthy(self.url):
            if self.proc.poll() is not None:
                raise ProcpipeError(f"Prefect server exited with code {self.proc.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ProcpipeError(f"Prefect server not healthy after {timeout:g} s: {self._tail()}")
            time.sleep(0.5)

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "(no server log)"
        return " | ".join(lines[-3:]) or "(empty server log)"

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds; waits for it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # children that outlived their parent (uvicorn workers) go with the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt until the runner installs its own graceful handler."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    *,
    cron: str | None = None,
    interval: float | None = None,
    config: str | Path = "sources.toml",
    raw_dir: str | Path = "raw",
    out_dir: str | Path = "processed",
    keep: int | None = None,
    gates: str | Path | None = None,
    name: str = DEPLOYMENT,
    startup_timeout: float = DEFAULT_STARTUP_SECONDS,
    ui: bool = True,
    announce: Any = print,
) -> None:
    """Serve ``scheduled-refresh`` on ``cron`` or every ``interval`` seconds until SIGINT/SIGTERM."""
    if (cron is None) == (interval is None):
        raise ValueError("give exactly one of cron and interval")
    params: dict[str, Any] = {
        "config": str(Path(config).resolve()),  # runs start in subprocesses: absolute folders
        "raw_dir": str(Path(raw_dir).resolve()),
        "out_dir": str(Path(out_dir).resolve()),
        "keep": keep,
        "gates": str(Path(gates).resolve()) if gates else None,
    }
    server: LocalServer | None = None
    with _term_as_interrupt():
        try:
            if configured_api_url() is None:
                server = LocalServer(project_prefect_home(), ui=ui)
                announce(f"procpipe serve: starting a Prefect server on 127.0.0.1:{server.port} "
                         f"(home {server.home}, log {server.log_path})")  # fmt: skip
                server.start(startup_timeout)
                os.environ["PREFECT_API_URL"] = server.url
                announce(f"procpipe serve: Prefect server {server.url} is up (pid {server.proc.pid})")  # type: ignore[union-attr]
            from prefect.settings import PREFECT_API_URL, temporary_settings

            when = f"cron {cron!r}" if cron else f"every {interval:g} s"
            announce(f"procpipe serve: deployment scheduled-refresh/{name}, {when}; "
                     f"{params['raw_dir']} -> {params['out_dir']}")  # fmt: skip
            with temporary_settings(updates={PREFECT_API_URL: os.environ.get("PREFECT_API_URL")}):
                scheduled_refresh.serve(
                    name=name,
                    cron=cron,
                    interval=interval,
                    parameters=params,
                    limit=1,  # one run at a time; the out-dir lock would refuse a second anyway
                    print_starting_message=False,
                    entrypoint_type=_module_entrypoint(),
                )
        except KeyboardInterrupt:
            pass
        finally:
            if server is not None:
                announce("procpipe serve: stopping the Prefect server")
                server.stop()


def _module_entrypoint() -> Any:
    """Runs load the flow by module path (``pipeline.serve.scheduled_refresh``), not a file path."""
    from prefect.deployments.runner import EntrypointType

    return EntrypointType.MODULE_PATH
