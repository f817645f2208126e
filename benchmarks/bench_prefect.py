"""The cost of Prefect itself: the same job through the flow and through the plain functions.

    .venv/bin/python benchmarks/bench_prefect.py              # 10,000 pages
    .venv/bin/python benchmarks/bench_prefect.py -n 2000 --repeat 2

Each way runs in a fresh Python process over the same cached corpus (``gen_corpus.py``), with the
same batch size and worker count:

- plain: ``pipeline.process.run_local(raw_dir, out_dir, workers=2, batch_size=200)``
- flow:  ``pipeline.flows.process(raw_dir, out_dir, batch_size=200, workers=2)``

Printed per way: import time, call time and whole-process wall time; then Prefect's share of the
flow's wall time, ``(flow - plain) / flow`` (goal < 10% at 10,000 pages), for the whole process and
for the call alone; and its share of the CPU seconds of the whole process tree (its temporary
server included), which other load on the machine disturbs less than wall time. With ``--repeat``
the ways alternate and the fastest run of each counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, ROOT, corpus, machine, mib, run_env, timed_run, warm_cache

DRIVER = """
import json, sys, time
t0 = time.perf_counter()
way, raw, out, batch, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if way == "flow":
    from pipeline.flows import process
else:
    from pipeline.process import run_local
t1 = time.perf_counter()
if way == "flow":
    m = process(raw_dir=raw, out_dir=out, batch_size=batch, workers=workers)
else:
    m = run_local(raw, out, workers=workers, batch_size=batch)
t2 = time.perf_counter()
print("RESULT " + json.dumps({"import_s": t1 - t0, "call_s": t2 - t1, "counts": m.counts.model_dump()}))
"""


def run_way(
    way: str, raw: Path, out: Path, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", DRIVER, way, str(raw), str(out), str(args.batch_size), str(args.workers)]
    t = timed_run(cmd, env, cwd=ROOT)
    line = next((ln for ln in t.output.splitlines() if ln.startswith("RESULT ")), None)
    if t.returncode != 0 or line is None:
        raise SystemExit(f"{way} run failed (exit {t.returncode}):\n{t.output}")
    res = json.loads(line.removeprefix("RESULT "))
    shutil.rmtree(out, ignore_errors=True)
    print(
        f"{way:5s}  import {res['import_s']:6.2f} s   call {res['call_s']:7.2f} s   "
        f"process {t.seconds:7.2f} s   cpu {t.cpu_s:7.2f} s   peak {mib(t.peak_rss)}   {res['counts']}",
        flush=True,
    )
    roles = ", ".join(f"{k} {v:.1f}" for k, v in t.cpu_by_role.items())
    print(f"       cpu seconds by process: {roles}", flush=True)
    return {
        "import_s": res["import_s"],
        "call_s": res["call_s"],
        "total_s": t.seconds,
        "cpu_s": t.cpu_s,
        "peak_rss": t.peak_rss,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000, help="pages (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each way, alternating (default 1)")
    args = ap.parse_args(argv)
    raw = corpus(args.n, args.seed, args.cache)
    warm_cache(raw)
    env = run_env(args.cache / "prefect-home")
    print(f"machine: {machine()}")
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}   {args.n} pages, batch {args.batch_size}, "
        f"{args.workers} workers"
    )
    # an untimed flow run on a tiny folder first: Prefect's database set-up is not the flow's cost
    tiny = args.cache / "runs" / "tiny-raw"
    tiny.mkdir(parents=True, exist_ok=True)
    timed_run(
        [sys.executable, "-c", DRIVER, "flow", str(tiny), str(args.cache / "runs" / "out-tiny"), "10", "1"],
        env,
        cwd=ROOT,
    )
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "flow": []}
    for _ in range(max(1, args.repeat)):
        for way in ("plain", "flow"):
            runs[way].append(run_way(way, raw, args.cache / "runs" / f"out-{way}", args, env))
    best = {w: min(rs, key=lambda r: r["total_s"]) for w, rs in runs.items()}
    plain, flow = best["plain"], best["flow"]
    share_total = (flow["total_s"] - plain["total_s"]) / flow["total_s"]
    share_call = (flow["call_s"] - plain["call_s"]) / flow["call_s"]
    share_cpu = (flow["cpu_s"] - plain["cpu_s"]) / flow["cpu_s"]
    print(
        f"\nplain {plain['total_s']:.2f} s (cpu {plain['cpu_s']:.2f} s), "
        f"flow {flow['total_s']:.2f} s (cpu {flow['cpu_s']:.2f} s), whole process trees"
    )
    print(
        f"Prefect's share of the flow's wall time: {share_total:.1%} whole process "
        f"(import {flow['import_s'] - plain['import_s']:+.2f} s), {share_call:.1%} of the call alone   "
        f"(goal < 10%)"
    )
    print(f"Prefect's share of the flow's CPU time (all processes, server included): {share_cpu:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
