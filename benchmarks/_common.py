"""Shared pieces of the benchmark scripts: cached corpora, the environment runs get, and the peak
memory of a whole process tree (parent, forkserver, workers, Prefect's server) read from /proc."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CACHE = Path("/tmp/procpipe_bench")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cached(name: str, what: str, make: Callable[[Path], object], cache: Path) -> Path:
    """``cache/<name>``, made once by ``make(folder)`` (into a temporary folder, renamed into place)."""
    target, done = cache / name, cache / f"{name}.done"
    if done.exists() and target.is_dir():
        return target
    tmp = cache / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    print(f"generating {what} into {target} ...", file=sys.stderr, flush=True)
    make(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    done.write_text(f"{time.perf_counter() - t0:.1f}s\n")
    return target


def corpus(n: int, seed: int, cache: Path = DEFAULT_CACHE) -> Path:
    """The generated corpus of ``n`` pages for ``seed``, generated once and reused (``cache/corpus-...``)."""
    sys.path.insert(0, str(HERE))
    from gen_corpus import generate

    return _cached(f"corpus-n{n}-s{seed}", f"{n} pages (seed {seed})", lambda d: generate(d, n, seed), cache)


def real_corpus(n: int, seed: int, cache: Path = DEFAULT_CACHE, source: Path | None = None) -> Path:
    """``n`` pages of real content in every markup style (``gen_real_corpus.py``), generated once
    per ``(n, seed)`` into ``cache/real-...`` and reused."""
    sys.path.insert(0, str(HERE))
    from gen_real_corpus import DEFAULT_SOURCE, generate

    return _cached(
        f"real-n{n}-s{seed}",
        f"{n} real-content pages (seed {seed})",
        lambda d: generate(d, n, seed, source or DEFAULT_SOURCE),
        cache,
    )


def page_files(raw: Path) -> list[Path]:
    """The input pages of a corpus folder (sidecars excluded), sorted like the pipeline sorts them."""
    return sorted(p for p in raw.iterdir() if p.is_file() and not p.name.endswith(".meta.json"))


def warm_cache(raw: Path) -> int:
    """Read every file once so the timed runs all start with the corpus in the page cache."""
    total = 0
    for p in raw.iterdir():
        total += len(p.read_bytes())
    return total


def run_env(prefect_home: Path) -> dict[str, str]:
    """The environment of every timed run: the project's Makefile defaults, with an isolated PREFECT_HOME."""
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(prefect_home))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    return env


def procpipe_exe(given: str | None) -> str:
    if given:
        return given
    local = Path(sys.executable).parent / "procpipe"
    return str(local) if local.exists() else (shutil.which("procpipe") or "procpipe")


def _tree(root: int) -> tuple[dict[int, int], dict[int, int]]:
    """({pid: RSS in bytes}, {pid: CPU ticks so far}) of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    rss: dict[int, int] = {}
    cpu: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                rss[pid] = int(fh.read().split()[1]) * PAGE_SIZE
            cpu[pid] = ticks.get(pid, 0)
        except OSError:
            pass
        todo += children.get(pid, [])
    return rss, cpu


class TreeMemory:
    """Samples a process tree every ``interval`` seconds: peak summed RSS, and CPU seconds used.

    CPU time is the last value seen for each process, so a process's final <interval is missed.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.peak_procs = 0
        self.peak_by_role: dict[str, int] = {}  # RSS of each kind of process at the moment of the peak
        self.role_peaks: dict[str, int] = {}  # each kind's own peak, whenever it was
        self._ticks: dict[int, int] = {}
        self._role: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._ticks.values()) / CLK_TCK

    @property
    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds per kind of process: parent, workers, prefect server, other."""
        out: dict[str, float] = {}
        for pid, ticks in self._ticks.items():
            role = self._role.get(pid, "other")
            out[role] = out.get(role, 0.0) + ticks / CLK_TCK
        return dict(sorted(out.items()))

    def _classify(self, pid: int) -> str:
        if pid == self.pid:
            return "parent"
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return "other"
        if b"prefect.server" in cmd or b"uvicorn" in cmd:
            return "prefect server"
        if b"forkserver" in cmd or b"spawn_main" in cmd:
            return "workers"
        return "other"

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, cpu = _tree(self.pid)
            self._ticks.update(cpu)
            for pid in cpu:
                if self._role.get(pid, "other") == "other":  # a fresh child may not have exec'd yet
                    self._role[pid] = self._classify(pid)
            by_role: dict[str, int] = {}
            for pid, r in rss.items():
                role = self._role.get(pid, "other")
                by_role[role] = by_role.get(role, 0) + r
            for role, r in by_role.items():
                self.role_peaks[role] = max(r, self.role_peaks.get(role, 0))
            total = sum(rss.values())
            if total > self.peak:
                self.peak, self.peak_procs, self.peak_by_role = total, len(rss), dict(sorted(by_role.items()))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Timed:
    seconds: float
    returncode: int
    peak_rss: int
    peak_procs: int
    cpu_s: float
    cpu_by_role: dict[str, float]
    peak_by_role: dict[str, int]
    role_peaks: dict[str, int]
    output: str


def timed_run(cmd: list[str], env: dict[str, str], *, cwd: Path = ROOT) -> Timed:
    """Run ``cmd``: wall time, exit code, peak RSS and CPU seconds of its process tree, its output's tail."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    with TreeMemory(proc.pid) as mem:
        out, _ = proc.communicate()
    dt = time.perf_counter() - t0
    return Timed(
        dt,
        proc.returncode,
        mem.peak,
        mem.peak_procs,
        mem.cpu_seconds,
        mem.cpu_by_role,
        mem.peak_by_role,
        mem.role_peaks,
        out[-4000:],
    )


def machine() -> str:
    """One line: CPU model, core count, Python, and the load when the benchmark started."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model or platform.processor()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average at start {load}, procpipe at {revision()}"
    )


def revision() -> str:
    """The project's git commit (short), with "+changes" when the work tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"
