"""The cost of Prefect itself: the same job through the flow and through the plain functions.

    .venv/bin/python benchmarks/bench_prefect.py              # 10,000 pages, both kinds of server
    .venv/bin/python benchmarks/bench_prefect.py -n 2000 --repeat 2
    .venv/bin/python benchmarks/bench_prefect.py -n 2000 --server running

Each way runs in a fresh Python process over the same cached corpus (``gen_corpus.py``), with the
same batch size and worker count:

- plain: ``pipeline.process.run_local(raw_dir, out_dir, workers=2, batch_size=200)``
- flow:  ``pipeline.flows.process(raw_dir, out_dir, batch_size=200, workers=2)``, against
  - ``ephemeral``: the temporary server Prefect starts for the run (no ``PREFECT_API_URL``; what a
    one-off ``procpipe process`` does), inside the measured process tree;
  - ``running``: an already-running ``prefect server start`` on 127.0.0.1 (``PREFECT_API_URL`` set;
    what a scheduled production job talks to), started once by this script
    (``pipeline.serve.LocalServer``, UI off). Its CPU is outside the process tree: it is printed
    on its own and added to the flow's CPU for the CPU share.

Printed per way: import time, call time and whole-process wall time; then, per kind of server,
Prefect's share of the flow's wall time, ``(flow - plain) / flow`` (goal < 10% at 10,000 pages),
for the whole process and for the call alone; and its share of the CPU seconds (all processes,
server included), which other load on the machine disturbs less than wall time; and Prefect's own
CPU: the parent's extra seconds over the plain run and the server's seconds. With ``--repeat``
the ways alternate and the fastest run of each counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CLK_TCK, DEFAULT_CACHE, ROOT, _tree, corpus, machine, mib, run_env, timed_run, warm_cache

if TYPE_CHECKING:
    from pipeline.serve import LocalServer

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


def _cpu_of_tree(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its descendants."""
    return sum(_tree(pid)[1].values()) / CLK_TCK


def run_way(
    way: str,
    raw: Path,
    out: Path,
    args: argparse.Namespace,
    env: dict[str, str],
    label: str | None = None,
    server: LocalServer | None = None,
) -> dict[str, float]:
    """One timed run of ``way`` (plain or flow); with ``server``, the flow talks to that running server."""
    label = label or way
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", DRIVER, way, str(raw), str(out), str(args.batch_size), str(args.workers)]
    if server is not None:
        env = {**env, "PREFECT_API_URL": server.url}
    server_cpu0 = _cpu_of_tree(server.proc.pid) if server is not None and server.proc else 0.0
    t = timed_run(cmd, env, cwd=ROOT)
    server_cpu = _cpu_of_tree(server.proc.pid) - server_cpu0 if server is not None and server.proc else 0.0
    line = next((ln for ln in t.output.splitlines() if ln.startswith("RESULT ")), None)
    if t.returncode != 0 or line is None:
        raise SystemExit(f"{label} run failed (exit {t.returncode}):\n{t.output}")
    res = json.loads(line.removeprefix("RESULT "))
    shutil.rmtree(out, ignore_errors=True)
    print(
        f"{label:14s} import {res['import_s']:6.2f} s   call {res['call_s']:7.2f} s   "
        f"process {t.seconds:7.2f} s   cpu {t.cpu_s:7.2f} s   peak {mib(t.peak_rss)}   {res['counts']}",
        flush=True,
    )
    roles = dict(t.cpu_by_role)
    if server is not None:
        roles["running server (outside the tree)"] = server_cpu
    print(
        "               cpu seconds by process: " + ", ".join(f"{k} {v:.1f}" for k, v in roles.items()),
        flush=True,
    )
    return {
        "import_s": res["import_s"],
        "call_s": res["call_s"],
        "total_s": t.seconds,
        "cpu_s": t.cpu_s + server_cpu,
        "peak_rss": t.peak_rss,
        "parent_cpu_s": roles.get("parent", 0.0),
        "server_cpu_s": server_cpu + roles.get("prefect server", 0.0),
    }


def _warm_up(args: argparse.Namespace, env: dict[str, str]) -> None:
    """An untimed flow run on a tiny folder: Prefect's database set-up is not the flow's cost."""
    tiny = args.cache / "runs" / "tiny-raw"
    tiny.mkdir(parents=True, exist_ok=True)
    out = args.cache / "runs" / "out-tiny"
    timed_run([sys.executable, "-c", DRIVER, "flow", str(tiny), str(out), "10", "1"], env, cwd=ROOT)
    shutil.rmtree(out, ignore_errors=True)


def _report(name: str, plain: dict[str, float], flow: dict[str, float]) -> None:
    share_total = (flow["total_s"] - plain["total_s"]) / flow["total_s"]
    share_call = (flow["call_s"] - plain["call_s"]) / flow["call_s"]
    share_cpu = (flow["cpu_s"] - plain["cpu_s"]) / flow["cpu_s"]
    print(
        f"\n{name}: plain {plain['total_s']:.2f} s (cpu {plain['cpu_s']:.2f} s), "
        f"flow {flow['total_s']:.2f} s (cpu {flow['cpu_s']:.2f} s), whole process trees"
    )
    print(
        f"  Prefect's share of the flow's wall time: {share_total:.1%} whole process "
        f"(import {flow['import_s'] - plain['import_s']:+.2f} s), {share_call:.1%} of the call alone   "
        f"(goal < 10%)"
    )
    print(f"  Prefect's share of the flow's CPU time (all processes, server included): {share_cpu:.1%}")
    print(
        f"  Prefect's own CPU: parent {flow['parent_cpu_s'] - plain['parent_cpu_s']:+.1f} s, "
        f"server {flow['server_cpu_s']:.1f} s (the workers do the same work in both ways: their "
        f"difference is mostly load from elsewhere)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000, help="pages (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each way, alternating (default 1)")
    ap.add_argument(
        "--server",
        choices=("ephemeral", "running", "both"),
        default="both",
        help="which Prefect server the flow talks to (default both)",
    )
    args = ap.parse_args(argv)
    raw = corpus(args.n, args.seed, args.cache)
    warm_cache(raw)
    env = run_env(args.cache / "prefect-home")
    env.pop("PREFECT_API_URL", None)  # ephemeral unless a running server is given explicitly
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # as the command line sets it
    print(f"machine: {machine()}")
    print(
        f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}   {args.n} pages, batch {args.batch_size}, "
        f"{args.workers} workers, server: {args.server}"
    )
    kinds = ["ephemeral", "running"] if args.server == "both" else [args.server]
    with contextlib.ExitStack() as stack:
        server: LocalServer | None = None
        if "running" in kinds:
            from pipeline.serve import LocalServer

            server = LocalServer(args.cache / "prefect-server-home", ui=False)
            stack.callback(server.stop)
            t0 = time.perf_counter()
            server.start()
            print(f"running server: {server.url} (up in {time.perf_counter() - t0:.1f} s)", flush=True)
            _warm_up(args, {**env, "PREFECT_API_URL": server.url})
        if "ephemeral" in kinds:
            _warm_up(args, env)
        runs: dict[str, list[dict[str, float]]] = {"plain": [], **{k: [] for k in kinds}}
        for _ in range(max(1, args.repeat)):
            runs["plain"].append(run_way("plain", raw, args.cache / "runs" / "out-plain", args, env))
            for kind in kinds:
                out = args.cache / "runs" / f"out-flow-{kind}"
                runs[kind].append(
                    run_way(
                        "flow", raw, out, args, env, f"flow {kind}", server if kind == "running" else None
                    )
                )
    best = {w: min(rs, key=lambda r: r["total_s"]) for w, rs in runs.items()}
    for kind in kinds:
        name = "temporary (ephemeral) server" if kind == "ephemeral" else "already-running server"
        _report(name, best["plain"], best[kind])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
