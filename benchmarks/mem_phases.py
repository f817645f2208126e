"""Which step of publishing holds memory: the parent's RSS and high-water mark around each one.

    .venv/bin/python benchmarks/mem_phases.py -n 50000

Runs ``pipeline.process.run_local(raw, out, workers=2)`` over the cached synthetic corpus (no
Prefect) and prints this process's RSS and peak (``VmHWM``) before and after each publish step:
``_write_version`` (tables, and the search index and app files fed from the same record stream),
the change report, the folder writers (data package), ``gates.measure`` and ``section_coverage``
where something still calls it, then ``run_summary`` as the CLI calls it. Compare two sizes: a step
whose high-water mark grows with the page count holds O(pages) memory in the parent. (run_local
publishes while the workers parse, so ``_write_version`` spans the whole parse.)
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, corpus, machine

PAGE = os.sysconf("SC_PAGE_SIZE")
T0 = time.perf_counter()


def _rss() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


def _hwm() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0.0


def _say(what: str) -> None:
    print(
        f"{time.perf_counter() - T0:8.1f} s  {what:34s} rss {_rss():6.0f} MiB   peak {_hwm():6.0f} MiB",
        flush=True,
    )


def _wrap(module: Any, name: str) -> None:
    fn = getattr(module, name, None)
    if fn is None:
        return

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _say(f"before {name}")
        try:
            return fn(*args, **kwargs)
        finally:
            _say(f"after  {name}")

    setattr(module, name, wrapped)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args(argv)

    import pipeline.load as load
    import pipeline.publish.changes as changes
    import pipeline.publish.extras as extras
    import pipeline.publish.gates as gates
    import pipeline.publish.writer as writer
    from pipeline.process import run_local

    _wrap(writer, "_write_version")
    _wrap(changes, "write_report")
    for w in [*extras.WRITERS, extras.LAST]:
        _wrap(extras, w.__name__)
    # the writer lists hold the original functions: swap in the wrapped ones, keep any others
    extras.WRITERS = [getattr(extras, w.__name__, w) for w in extras.WRITERS]
    extras.LAST = getattr(extras, extras.LAST.__name__, extras.LAST)
    _wrap(gates, "measure")
    _wrap(load, "section_coverage")

    raw = corpus(args.n, args.seed, args.cache)
    out = args.cache / "runs" / f"out-mem-phases-{args.n}"
    shutil.rmtree(out, ignore_errors=True)
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}   {args.n} pages, run_local(workers=2)")
    _say("start")
    manifest = run_local(raw, out, workers=2, batch_size=200)
    _say("run_local done")
    load.run_summary(out, manifest.run_id)
    _say("run_summary done")
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
