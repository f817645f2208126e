"""Schedules: ``procpipe serve --interval 5`` with no Prefect server configured starts one itself,
publishes a version from a scheduled run, and stops the server when it gets SIGTERM.

One test only: it starts a real Prefect server and a runner (its scheduler and the runner's polling
set to 2 s through Prefect's settings, so the first scheduled run comes within seconds).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_incremental import make_raw

from pipeline.publish.versions import list_versions, verify


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _group(pgid: int) -> list[int]:
    """Live processes in a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def test_serve_publishes_on_schedule_and_stops_its_server(tmp_path: Path) -> None:
    project = tmp_path / "project"
    make_raw(project / "raw", 3)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    # test speed only: the server's scheduler looks for runs to create every 2 s (not 60 s) and the
    # runner asks for due runs every 2 s (not 10 s); the schedule, server and runner stay real
    env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "2"
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "2"
    exe = shutil.which("procpipe", path=str(Path(sys.executable).parent)) or "procpipe"
    log = tmp_path / "serve.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [exe, "serve", "--interval", "5"], cwd=project, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    server_pid = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list_versions(project / "processed"):
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        lines = log.read_text().splitlines()
        for line in lines:
            if m := re.search(r"Prefect server \S+ is up \(pid (\d+)\)", line):
                server_pid = int(m.group(1))
        found = list_versions(project / "processed")
        assert found, "no version published within 2 minutes:\n" + "\n".join(lines[-30:])
        assert server_pid is not None and _alive(server_pid)
        assert (tmp_path / "prefect-home" / "prefect.db").is_file()  # the server's SQLite, in PREFECT_HOME
        assert found[0].manifest.counts.records == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert server_pid is not None and not _alive(server_pid)
    assert _group(server_pid) == []  # nothing the server started outlives it
    time.sleep(1)
    for v in list_versions(project / "processed"):
        assert verify(v.path) == []
