"""End-to-end throughput and peak memory of ``procpipe process`` against the BeautifulSoup floor.

    .venv/bin/python benchmarks/bench_process.py                    # 10,000 and 50,000 pages
    .venv/bin/python benchmarks/bench_process.py --sizes 10000      # one size

For each size N the synthetic corpus (``gen_corpus.py``, cached under ``/tmp/procpipe_bench``) is
timed three ways in the same run, with the corpus warm in the page cache:

- floor: a bare single-process loop of ``BeautifulSoup(page_bytes, "lxml")`` over the same files;
- empty: ``procpipe process`` on an empty folder (the fixed start-up cost: imports, Prefect, pool);
- full: ``procpipe process`` over the corpus, end to end (discover, parse, normalize, validate, write).

It prints pages/s and ``ratio = floor_time / (full_time - empty_time)`` (goal >= 1.6 on two cores),
the peak RSS of the whole ``procpipe`` process tree (parent, forkserver, workers, Prefect's server;
sampled from /proc every 50 ms) and the peak ratio between the largest and the smallest size
(goal <= 1.25). Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_CACHE,
    corpus,
    machine,
    mib,
    page_files,
    procpipe_exe,
    real_corpus,
    run_env,
    timed_run,
    warm_cache,
)


def floor_loop(files: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds for one process to read and soup every file with lxml: BeautifulSoup's speed."""
    import warnings

    from bs4 import BeautifulSoup

    warnings.filterwarnings("ignore")  # MarkupResemblesLocatorWarning and friends on odd inputs
    for p in files[:50]:  # warm-up: imports, lxml's parser objects
        BeautifulSoup(p.read_bytes(), "lxml")
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    for p in files:
        BeautifulSoup(p.read_bytes(), "lxml")
    return time.perf_counter() - t0, time.process_time() - c0


def _counts(out: Path) -> str:
    try:
        m = json.loads((out / "latest" / "manifest.json").read_text())
        c = m["counts"]
        return ", ".join(f"{k} {c[k]}" for k in ("inputs", "records", "rejects", "duplicates"))
    except (OSError, ValueError, KeyError) as exc:
        return f"(no manifest: {exc})"


def _floor(files: list[Path], when: str) -> tuple[float, float]:
    wall, cpu = floor_loop(files)
    print(
        f"floor   BeautifulSoup(page, 'lxml'), 1 process ({when}): {wall:8.2f} s  "
        f"{len(files) / wall:6.0f} pages/s  (cpu {cpu:.2f} s)",
        flush=True,
    )
    return wall, cpu


def bench_size(n: int, args: argparse.Namespace, exe: str, env: dict[str, str]) -> dict[str, Any]:
    """Floor, empty run and full run for one corpus size; prints them and returns the figures."""
    raw = real_corpus(n, args.seed, args.cache) if args.real else corpus(n, args.seed, args.cache)
    files = page_files(raw)
    size = warm_cache(raw)
    work = args.cache / "runs"
    empty_raw, out_empty, out_full = work / "empty-raw", work / f"out-empty-{n}", work / f"out-full-{n}"
    for d in (out_empty, out_full):
        shutil.rmtree(d, ignore_errors=True)
    empty_raw.mkdir(parents=True, exist_ok=True)
    extra = (
        ["--workers", str(args.workers), "--batch-size", str(args.batch_size)] if args.pass_options else []
    )
    cmd = [exe, "process", *extra]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n== {n} {'real-content' if args.real else 'synthetic'} pages ({len(files)} files, "
        f"{size / 2**20:.0f} MiB with sidecars), load {load} ==",
        flush=True,
    )

    floors = [_floor(files, "before")]
    timed_run([*cmd, "--raw-dir", str(empty_raw), "--out-dir", str(out_empty)], env)  # warm-up (db, imports)
    empties = [
        timed_run([*cmd, "--raw-dir", str(empty_raw), "--out-dir", str(out_empty)], env)
        for _ in range(args.empty_runs)
    ]
    empty = min(empties, key=lambda t: t.seconds)
    if empty.returncode != 0:
        print(f"empty run failed (exit {empty.returncode}):\n{empty.output}", file=sys.stderr)
    print(
        f"empty   procpipe process on an empty folder:   {empty.seconds:8.2f} s  "
        f"(cpu {empty.cpu_s:.2f} s, peak {mib(empty.peak_rss)}, {empty.peak_procs} processes)",
        flush=True,
    )
    roles = ", ".join(f"{k} {v:.1f}" for k, v in empty.cpu_by_role.items())
    print(f"        cpu seconds by process: {roles}")

    full = timed_run([*cmd, "--raw-dir", str(raw), "--out-dir", str(out_full)], env)
    if full.returncode != 0:
        print(f"full run failed (exit {full.returncode}):\n{full.output}", file=sys.stderr)
    steady = full.seconds - empty.seconds
    print(
        f"full    procpipe process:                      {full.seconds:8.2f} s  "
        f"{len(files) / full.seconds:6.0f} pages/s end to end, {len(files) / steady:.0f} pages/s steady state"
        f"  (cpu {full.cpu_s:.2f} s)",
        flush=True,
    )
    print(f"        {_counts(out_full)}")
    print("        cpu seconds by process: " + ", ".join(f"{k} {v:.1f}" for k, v in full.cpu_by_role.items()))
    if args.floor_after:
        floors.append(_floor(files, "after"))
    floor, floor_cpu = min(floors)  # the fastest floor: the ratio is not flattered by a slow one
    ratio = floor / steady if steady > 0 else float("nan")
    work_cpu = full.cpu_s - empty.cpu_s
    cpu_ratio = floor_cpu / work_cpu if work_cpu > 0 else float("nan")
    print(f"ratio   floor / (full - empty) = {floor:.2f} / {steady:.2f} = {ratio:.2f}   (goal >= 1.6)")
    print(
        f"        CPU: floor {floor_cpu:.2f} s / pipeline {work_cpu:.2f} s = {cpu_ratio:.2f} "
        "(the most 2 cores can give is about twice this)"
    )
    print(
        f"memory  peak RSS of the procpipe process tree: {mib(full.peak_rss)} "
        f"({full.peak_procs} processes at the peak)",
        flush=True,
    )
    print("        at the peak: " + ", ".join(f"{k} {mib(v)}" for k, v in full.peak_by_role.items()))
    print("        each kind's own peak: " + ", ".join(f"{k} {mib(v)}" for k, v in full.role_peaks.items()))
    if not args.keep:
        shutil.rmtree(out_full, ignore_errors=True)
    return {
        "n": n,
        "files": len(files),
        "floor_s": round(floor, 3),
        "floor_cpu_s": round(floor_cpu, 3),
        "empty_s": round(empty.seconds, 3),
        "empty_cpu_s": round(empty.cpu_s, 3),
        "full_s": round(full.seconds, 3),
        "full_cpu_s": round(full.cpu_s, 3),
        "ratio": round(ratio, 3),
        "cpu_ratio": round(cpu_ratio, 3),
        "peak_rss": full.peak_rss,
        "empty_peak_rss": empty.peak_rss,
        "peak_procs": full.peak_procs,
        "cpu_by_role": {k: round(v, 2) for k, v in full.cpu_by_role.items()},
        "peak_by_role": full.peak_by_role,
        "role_peaks": full.role_peaks,
        "load_at_start": load,
        "exit": full.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes", default="10000,50000", help="comma-separated page counts (default 10000,50000)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--real", action="store_true",
        help="real page content in every markup style (gen_real_corpus.py, from ../shared/corpus) "
        "instead of the synthetic corpus",
    )  # fmt: skip
    ap.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="corpora and run outputs (default %(default)s)"
    )
    ap.add_argument("--procpipe", help="the procpipe executable (default: the one beside this Python)")
    ap.add_argument(
        "--empty-runs", type=int, default=2, help="timed empty runs; the fastest counts (default 2)"
    )
    ap.add_argument(
        "--pass-options",
        action="store_true",
        help="pass --workers/--batch-size to procpipe process (default: its own defaults)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument(
        "--no-floor-after", dest="floor_after", action="store_false",
        help="time the floor only before the runs (default: before and after; the faster counts)",
    )  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the full runs' output folders")
    ap.add_argument("--json", type=Path, help="also append the figures as one JSON line to this file")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    exe = procpipe_exe(args.procpipe)
    env = run_env(args.cache / "prefect-home")
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}   procpipe: {exe}")
    rows = [bench_size(n, args, exe, env) for n in sizes]

    print("\n   pages  floor s  empty s   full s  floor p/s  steady p/s  ratio  cpu ratio   peak RSS")
    for r in rows:
        steady = float(r["full_s"]) - float(r["empty_s"])
        print(
            f"{r['n']:8d} {r['floor_s']:8.2f} {r['empty_s']:8.2f} {r['full_s']:8.2f} "
            f"{int(r['files']) / float(r['floor_s']):10.0f} {int(r['files']) / steady:11.0f} "
            f"{r['ratio']:6.2f} {r['cpu_ratio']:10.2f} {mib(int(r['peak_rss'])):>10}"
        )
    if len(rows) > 1:
        small, big = min(rows, key=lambda r: int(r["n"])), max(rows, key=lambda r: int(r["n"]))
        growth = int(big["peak_rss"]) / max(1, int(small["peak_rss"]))
        print(f"peak memory {big['n']} / {small['n']} pages: {growth:.2f}x   (goal <= 1.25)")
    if args.json:
        with args.json.open("a") as fh:
            fh.write(
                json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), "rows": rows})
                + "\n"
            )
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
