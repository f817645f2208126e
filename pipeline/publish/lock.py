"""One run at a time per output folder: an exclusive ``fcntl.flock`` on ``<out_dir>/.lock``.

The lock is held by an open file, so the kernel drops it when its process dies (kill -9
included): a lock file left behind by a dead run is stale text, never a held lock, and the next
run simply takes it. While held, the file names its holder (run id, pid, host, since when) so a
run that finds it taken can say who holds it.

A second run waits up to ``wait`` seconds (``procpipe process --wait SECONDS``; 0 = not at all)
and then raises ``LockHeld``. The lock is re-entrant within one process (the Prefect flow holds
it while its publish task, on another thread, takes it again), never across processes. Threads
of one process are therefore not kept apart by it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ProcpipeError

LOCK_FILE = ".lock"
POLL_SECONDS = 0.2


class LockHeld(ProcpipeError):
    """Another run is publishing into the same output folder."""

    def __init__(self, out_dir: Path, holder: dict[str, Any] | None, waited: float) -> None:
        self.out_dir, self.holder, self.waited = out_dir, holder, waited
        who = describe(holder)
        after = f" after waiting {waited:g} s" if waited > 0 else ""
        hint = "wait for it to finish, or pass --wait SECONDS" if waited <= 0 else "try again later"
        super().__init__(f"{out_dir} is locked by {who}{after}; {hint}")


def describe(holder: dict[str, Any] | None) -> str:
    """``run 2026...-abc (pid 42 on host, since 2026-11-25T17:00:00+00:00)`` or ``another run``."""
    if not holder:
        return "another run (holder not written yet)"
    return (
        f"run {holder.get('run_id') or '?'} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"since {holder.get('since', '?')})"
    )


_held: dict[str, tuple[int, int]] = {}  # real path of the lock file -> (fd, depth)
_guard = threading.Lock()


def read_holder(out_dir: Path) -> dict[str, Any] | None:
    """What the lock file says about its (last) holder; None when absent or unreadable."""
    try:
        text = (Path(out_dir) / LOCK_FILE).read_text(encoding="utf-8")
        data = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_locked(out_dir: Path) -> bool:
    """True when some process (this one included) holds the lock of ``out_dir`` right now."""
    path = Path(out_dir) / LOCK_FILE
    if not path.exists():
        return False
    if str(path.resolve()) in _held:
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we just took
    return False


def _write_holder(fd: int, run_id: str | None) -> None:
    holder = {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
    os.fsync(fd)


@contextmanager
def out_dir_lock(out_dir: Path, *, run_id: str | None = None, wait: float = 0.0) -> Iterator[None]:
    """Hold the publishing lock of ``out_dir`` (created if needed) for the ``with`` block."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    key = str(path.resolve())
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                fd, depth = _held[key]
                _held[key] = (fd, depth - 1)
        return

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait:
                    raise LockHeld(out_dir, read_holder(out_dir), wait) from None
                time.sleep(min(POLL_SECONDS, max(0.0, wait - waited)))
        _write_holder(fd, run_id)
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[key] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            _held.pop(key, None)
        try:
            os.ftruncate(fd, 0)  # nobody holds it now; a stale holder line would only mislead
        except OSError:
            pass
        os.close(fd)  # releases the flock
