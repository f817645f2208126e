"""What a refresh costs when nothing (or 1%) changed, per page, against a full run.

    .venv/bin/python benchmarks/bench_incremental.py                  # 5,000 and 20,000 pages
    .venv/bin/python benchmarks/bench_incremental.py --sizes 20000 --prefect

For each size N the synthetic corpus (``gen_corpus.py``, cached under ``/tmp/procpipe_bench``) is
linked into a scratch raw folder (hard links: the cache is never changed) and timed, with the corpus
warm in the page cache, as:

- empty: ``procpipe process`` on an empty folder: the fixed start-up of a run, set aside below;
- full: ``procpipe process --full`` into a fresh output folder (every page parsed);
- unchanged: ``procpipe process`` again with nothing changed (``--repeat`` times, the median);
- 1% changed: ``procpipe process`` after 1% of the pages were rewritten.

Per-page cost = (run - empty) / N, in wall seconds (and, less sensitive to other load on the
machine, in CPU seconds of the process tree). The issue's goal: unchanged per-page cost <= 5% of the
full run's. ``--no-prefect`` (the default) times the job without Prefect's temporary server, whose start-up
varies by seconds; ``--prefect`` times the flow. Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, Timed, corpus, machine, procpipe_exe, run_env, timed_run, warm_cache


def _link_tree(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=os.link)


def _rewrite(raw: Path, share: float) -> int:
    """Rewrite ``share`` of the pages (a new file, so the cached corpus behind the link stays)."""
    pages = sorted(p for p in raw.iterdir() if p.suffix in (".html", ".txt", ".md"))
    step = max(1, round(1 / share))
    changed = 0
    for p in pages[::step]:
        data = p.read_bytes()
        p.unlink()
        marker = b"\n<p>Revised.</p>\n" if p.suffix == ".html" else b"\n\nRevised.\n"
        p.write_bytes(data + marker)
        changed += 1
    return changed


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "latest" / "manifest.json").read_text(encoding="utf-8"))


def _check(t: Timed, what: str) -> Timed:
    if t.returncode != 0:
        print(f"{what} failed (exit {t.returncode}):\n{t.output}", file=sys.stderr)
        raise SystemExit(1)
    return t


def bench_size(n: int, args: argparse.Namespace, exe: str, env: dict[str, str]) -> dict[str, Any]:
    work = args.cache / "incremental"
    raw, empty_raw = work / f"raw-{n}", work / "empty-raw"
    out, out_empty = work / f"out-{n}", work / "out-empty"
    _link_tree(corpus(n, args.seed, args.cache), raw)
    for d in (out, out_empty):
        shutil.rmtree(d, ignore_errors=True)
    empty_raw.mkdir(parents=True, exist_ok=True)
    size = warm_cache(raw)
    cmd = [exe, "process", *([] if args.prefect else ["--no-prefect"]), "--keep", "3"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n== {n} pages ({size / 2**20:.0f} MiB with sidecars), load {load} ==", flush=True)

    def run(raw_dir: Path, out_dir: Path, *extra: str, what: str) -> Timed:
        return _check(
            timed_run([*cmd, *extra, "--raw-dir", str(raw_dir), "--out-dir", str(out_dir)], env), what
        )

    run(empty_raw, out_empty, what="warm-up")
    empty = min((run(empty_raw, out_empty, what="empty") for _ in range(3)), key=lambda t: t.seconds)
    print(
        f"empty      {empty.seconds:8.2f} s  (cpu {empty.cpu_s:.2f} s): fixed start-up, set aside", flush=True
    )

    full = run(raw, out, "--full", what="full")
    full_pp = (full.seconds - empty.seconds) / n
    print(
        f"full       {full.seconds:8.2f} s  (cpu {full.cpu_s:.2f} s)  {full_pp * 1000:7.3f} ms/page",
        flush=True,
    )

    unchanged = []
    for _ in range(args.repeat):
        unchanged.append(run(raw, out, what="unchanged"))
        m = _manifest(out)
        assert m["reused"] == m["counts"]["inputs"], "an unchanged refresh parsed pages"
    u = statistics.median(t.seconds for t in unchanged)
    u_cpu = statistics.median(t.cpu_s for t in unchanged)
    u_pp = (u - empty.seconds) / n
    ratio = u_pp / full_pp if full_pp > 0 else float("nan")
    runs = ", ".join(f"{t.seconds:.2f}" for t in unchanged)
    print(f"unchanged  {u:8.2f} s  (cpu {u_cpu:.2f} s)  {u_pp * 1000:7.3f} ms/page   median of {runs}")
    full_cpu_pp = (full.cpu_s - empty.cpu_s) / n
    cpu_ratio = (u_cpu - empty.cpu_s) / n / full_cpu_pp if full_cpu_pp > 0 else float("nan")
    print(
        f"           per page: unchanged / full = {ratio:.2%}   (goal <= 5%); in CPU seconds {cpu_ratio:.2%}"
    )
    sys.stdout.flush()

    changed = _rewrite(raw, 0.01)
    one = run(raw, out, what="1% changed")
    m = _manifest(out)
    one_pp = (one.seconds - empty.seconds) / n
    print(
        f"1% changed {one.seconds:8.2f} s  (cpu {one.cpu_s:.2f} s)  {one_pp * 1000:7.3f} ms/page = "
        f"{one_pp / full_pp:.1%} of full; {changed} pages rewritten, reused {m['reused']}, "
        f"changes {m['changes']}",
        flush=True,
    )
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(raw, ignore_errors=True)
    return {
        "n": n,
        "empty_s": round(empty.seconds, 3),
        "full_s": round(full.seconds, 3),
        "full_ms_per_page": round(full_pp * 1000, 4),
        "unchanged_s": [round(t.seconds, 3) for t in unchanged],
        "unchanged_ms_per_page": round(u_pp * 1000, 4),
        "unchanged_over_full": round(ratio, 4),
        "unchanged_over_full_cpu": round(cpu_ratio, 4),
        "one_percent_s": round(one.seconds, 3),
        "one_percent_over_full": round(one_pp / full_pp, 4),
        "prefect": args.prefect,
        "load_at_start": load,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="unchanged runs per size (median)")
    parser.add_argument("--prefect", action="store_true", help="time the Prefect flow, not --no-prefect")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--procpipe", default=None, help="the procpipe executable (default: the venv's)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch raw and output folders")
    args = parser.parse_args()
    exe = procpipe_exe(args.procpipe)
    env = run_env(args.cache / "prefect-home")
    print(f"machine: {machine()}")
    rows = [bench_size(n, args, exe, env) for n in args.sizes]
    print("\n   pages   full s  full ms/p  unchanged s  unch ms/p  unch/full  1% changed/full")
    for r in rows:
        u = statistics.median(r["unchanged_s"])
        print(
            f"{r['n']:>8} {r['full_s']:8.2f} {r['full_ms_per_page']:10.3f} {u:12.2f} "
            f"{r['unchanged_ms_per_page']:10.3f} {r['unchanged_over_full']:10.2%} "
            f"{r['one_percent_over_full']:16.1%}"
        )
    with (args.cache / "incremental-results.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(
            json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), "rows": rows})
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
