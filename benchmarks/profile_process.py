"""Where the time of a run goes: a pyinstrument profile of the whole job in one process.

    .venv/bin/pip install pyinstrument          # a profiling tool, not a project dependency
    .venv/bin/python benchmarks/profile_process.py -n 10000 [--top 25] [--text profile.txt]

Runs ``pipeline.process.run_local(raw, out, workers=1)`` over the cached synthetic corpus: with one
worker every stage (discover, read, decode, parse, normalize, validate, publish) runs in this
process, so the profile sees the work that the pool's workers and the parent share out in a real
run. Prints the time inside each stage (inclusive, recursion counted once) and the top functions by
self time with their share of the run; ``--text`` also writes pyinstrument's call tree.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, corpus, machine, warm_cache

#: Stage name -> functions that open it. Each sample counts once, for the innermost stage on its
#: stack, so the stages add up to 100% ("other": outside every stage, e.g. imports).
STAGES: dict[str, tuple[str, ...]] = {
    "discover": ("discover",),
    "worker: other (process_page)": ("process_page",),
    "read (file + sidecar)": ("read_page",),
    "decode + sha256": ("decode_bytes", "detect_kind", "openssl_sha256"),
    "parse html": ("parse_html",),
    "parse text/markdown": ("parse_text", "parse_markdown"),
    "normalize + validate (build_record)": ("build_record",),
    "record -> dict (model_dump)": ("model_dump",),
    "publish: write (parent)": ("publish",),
}


def _key(frame: Any) -> str:
    path = frame.file_path_short or frame.file_path or ""
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{frame.function} ({path}:{frame.line_no})"


def aggregate(root: Any) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(self time by function, inclusive time by function, self time by innermost stage) of a frame tree."""
    self_t: dict[str, float] = defaultdict(float)
    incl: dict[str, float] = defaultdict(float)
    stages: dict[str, float] = defaultdict(float)
    stage_of = {fn: st for st, fns in STAGES.items() for fn in fns}

    def walk(frame: Any, active: frozenset[str], stage: str) -> None:
        if frame.is_synthetic:
            return
        k = _key(frame)
        stage = stage_of.get(frame.function, stage)
        self_t[k] += frame.total_self_time
        stages[stage] += frame.total_self_time
        if k not in active:
            incl[k] += frame.time
        for child in frame.children:
            walk(child, active | {k}, stage)

    walk(root, frozenset(), "other")
    return self_t, incl, stages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.001, help="sampling interval in seconds")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--text", type=Path, help="write pyinstrument's call tree (text) here")
    args = ap.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("pyinstrument is not installed: .venv/bin/pip install pyinstrument") from None
    from pipeline.process import run_local

    raw = corpus(args.n, args.seed, args.cache)
    warm_cache(raw)
    out = args.cache / "runs" / "out-profile"
    shutil.rmtree(out, ignore_errors=True)
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}   {args.n} pages, run_local(workers=1)")
    prof = Profiler(interval=args.interval)
    t0 = time.perf_counter()
    prof.start()
    manifest = run_local(raw, out, workers=1, batch_size=args.batch_size)
    prof.stop()
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    counts = manifest.counts.model_dump()
    print(f"{wall:.1f} s wall ({args.n / wall:.0f} pages/s in one process); counts {counts}")
    root = prof.last_session.root_frame()
    if root is None:
        raise SystemExit("no samples")
    total = root.time
    self_t, incl, stages = aggregate(root)

    print("\nstages (innermost stage on the stack):")
    for st in [*STAGES, "other"]:
        print(f"  {stages.get(st, 0.0) / total:6.1%}  {st}")
    print(f"\ntop {args.top} functions by self time:")
    for k, t in sorted(self_t.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {t / total:6.1%}  {k}")
    print(f"\ntop {args.top} project functions by inclusive time:")
    ours = [(k, t) for k, t in incl.items() if "(pipeline/" in k or "(schemas/" in k]
    for k, t in sorted(ours, key=lambda kv: -kv[1])[: args.top]:
        print(f"  {t / total:6.1%}  {k}")
    if args.text:
        args.text.write_text(prof.output_text(unicode=True, color=False, show_all=False))
        print(f"\ncall tree written to {args.text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
