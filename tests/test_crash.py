"""Crash safety: real ``procpipe process --no-prefect`` runs killed with SIGKILL at random moments
never leave ``latest`` out of step with its manifest, and the next run succeeds; the out-dir lock
keeps a second run out (it fails naming the holder, or waits with ``--wait``).

The kill test makes ``PROCPIPE_KILLS`` kills (default 3, to keep the suite fast; the issue's
done-criterion is ``PROCPIPE_KILLS=12 .venv/bin/pytest tests/test_crash.py -k kill -s``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from test_incremental import code_of, make_raw, page

from pipeline.publish import latest_version, read_manifest
from pipeline.publish.lock import out_dir_lock, read_holder
from pipeline.publish.versions import list_versions, verify

KILLS = int(os.environ.get("PROCPIPE_KILLS", "3"))


def command(raw: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "process", "--no-prefect", "--raw-dir", str(raw),
            "--out-dir", str(out), "--batch-size", "10", *extra]  # fmt: skip


def test_a_second_run_fails_naming_the_holder(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 2), tmp_path / "out"
    with out_dir_lock(out, run_id="holder-run-1"):
        assert read_holder(out)["pid"] == os.getpid()  # type: ignore[index]
        proc = subprocess.run(command(raw, out), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"is locked by run holder-run-1 (pid {os.getpid()} on {socket.gethostname()}" in proc.stderr
    assert "--wait" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (out / "versions").exists() or not list((out / "versions").iterdir())
    assert read_holder(out) is None  # released: the file no longer names anyone


def test_a_second_run_with_wait_publishes_after_the_first(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 2), tmp_path / "out"
    with out_dir_lock(out, run_id="holder-run-2"):
        proc = subprocess.Popen(command(raw, out, "--wait", "120"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(3)
        assert proc.poll() is None  # still waiting for the lock
        assert not (out / "latest").exists()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert verify(out / "latest") == []


def test_a_lock_file_left_by_a_dead_run_is_ignored(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 2), tmp_path / "out"
    out.mkdir()
    dead = {"run_id": "dead-run", "pid": 2**22 + 1, "host": socket.gethostname(), "since": "2030-01-01"}
    (out / ".lock").write_text(json.dumps(dead), encoding="utf-8")
    proc = subprocess.run(command(raw, out), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _change_pages(raw: Path, rng: random.Random, n: int) -> None:
    for i in rng.sample(range(n), k=n // 3):
        text = page(code_of(i), i, summary=f"Rewritten {rng.random():.6f}: a needle takes a sample.")
        (raw / "site" / "cpt" / f"{code_of(i)}.md").write_text(text, encoding="utf-8")


def _assert_latest_intact(out: Path) -> str:
    latest = latest_version(out)
    assert latest is not None
    problems = verify(latest)
    assert problems == [], problems
    manifest = read_manifest(latest)
    assert manifest.run_id == latest.name
    return manifest.run_id


def test_kill_9_at_random_moments_never_breaks_latest(tmp_path: Path) -> None:
    n = 80
    rng = random.Random(int(os.environ.get("PROCPIPE_KILL_SEED", "4")))
    raw, out = make_raw(tmp_path / "raw", n, bad=2, duplicates=2), tmp_path / "out"
    t0 = time.monotonic()
    first = subprocess.run(command(raw, out, "--full"), capture_output=True, text=True, timeout=300)
    full_s = time.monotonic() - t0
    assert first.returncode == 0, first.stderr
    published = {_assert_latest_intact(out)}
    report = []
    for k in range(KILLS):
        _change_pages(raw, rng, n)
        extra = ["--full"] if k % 2 else []
        delay = rng.uniform(0.0, full_s * 1.1)
        debris = set((out / "versions").glob(".tmp-*"))  # left by the last killed run
        proc = subprocess.Popen(command(raw, out, *extra), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        time.sleep(delay)
        writing = bool(set((out / "versions").glob(".tmp-*")) - debris)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, as a crash would
        proc.wait()
        current = _assert_latest_intact(out)
        phase = (
            "after it published"
            if current not in published
            else "while publishing"
            if writing
            else "before publishing"
        )
        report.append(f"kill {k + 1} at {delay:.2f}s {phase}")
        published.add(current)
    final = subprocess.run(command(raw, out), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    last = _assert_latest_intact(out)
    assert last not in published
    assert not [p.name for p in (out / "versions").iterdir() if p.name.startswith(".")]  # debris cleaned
    for v in list_versions(out):
        assert verify(v.path) == [], v.run_id
    print(f"\nfull run {full_s:.2f}s; " + "; ".join(report) + f"; then a run succeeded ({last})")
