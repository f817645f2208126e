"""CPU cost per page of each stage, in one process and without a profiler, next to the floor.

    .venv/bin/python benchmarks/bench_stages.py -n 10000 [--limit 3000]

A profiler's per-call hooks inflate call-heavy code such as BeautifulSoup's tree builder, so this
times the same composition as ``pipeline.api.parse_page`` stage by stage with
``time.process_time`` over the cached synthetic corpus: read (file + sidecar), decode, parse
(HTML and text/Markdown apart), normalize (``build_record``), ``model_dump``, the worker's share of
publishing (``prepare_record``: validate, dump the line, the sinks' digests, the staged app file),
and ``publish`` of the prepared results (the chunk tables built in this process too); beside them
the floor (``BeautifulSoup(page_bytes, "lxml")``).
The last line is the budget: to reach ratio >= 1.6 on two cores, the pipeline may spend at most
2 / 1.6 = 1.25x the floor's CPU per page (less whatever the parent and Prefect cost).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_CACHE, corpus, machine, page_files, warm_cache


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000, help="corpus size (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--limit", type=int, help="time only the first LIMIT files of the corpus")
    ap.add_argument("--raw", type=Path, help="time this raw folder instead of the synthetic corpus")
    ap.add_argument("--repeat", type=int, default=1, help="time every file this many times")
    args = ap.parse_args(argv)

    from bs4 import BeautifulSoup

    import pipeline.publish.writer as writer
    from pipeline.errors import RejectedPage
    from pipeline.normalize import build_record
    from pipeline.parse import parse_document
    from pipeline.publish import publish
    from pipeline.publish.prepare import prepare_record
    from pipeline.sources.decode import charset_of, decode_bytes, detect_kind
    from pipeline.sources.files import read_page

    warnings.filterwarnings("ignore")
    raw = args.raw if args.raw else corpus(args.n, args.seed, args.cache)
    warm_cache(raw)
    files = page_files(raw)[: args.limit] if args.limit else page_files(raw)
    files = files * args.repeat
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}   {len(files)} pages of corpus n={args.n}")

    spent: dict[str, float] = defaultdict(float)
    pages: dict[str, int] = defaultdict(int)
    clock = time.process_time
    for p in files[:50]:  # warm-up: imports and caches (vocabulary, regexes)
        BeautifulSoup(p.read_bytes(), "lxml")
    t = clock()
    for p in files:
        BeautifulSoup(p.read_bytes(), "lxml")
    floor = clock() - t

    results: list[dict[str, Any]] = []
    stage_root = Path(tempfile.mkdtemp(prefix="procpipe-bench-stage-"))
    stage = stage_root / "json"  # the app files the workers stage (moved into the version by publish)
    for p in files:
        t0 = clock()
        try:
            page = read_page(p, raw)
        except RejectedPage as exc:
            results.append({"reject": {"source": p.name, "stage": exc.stage, "reason": exc.reason}})
            continue
        t1 = clock()
        ct = page.meta.get("content_type")
        kind = detect_kind(page.path, ct, page.content)
        sha = hashlib.sha256(page.content).hexdigest()
        try:
            text = decode_bytes(page.content, declared=charset_of(ct), kind=kind)
            t2 = clock()
            doc = parse_document(text, kind)
            t3 = clock()
            rec = build_record(
                doc, url=page.meta.get("url"), path=page.path, meta=page.meta, sha256=sha, kind=kind
            )
            t4 = clock()
            data = rec.model_dump(mode="json")
            t5 = clock()
            results.append(prepare_record(data, stage))
            t6 = clock()
        except RejectedPage as exc:
            results.append({"reject": {"source": page.path, "stage": exc.stage, "reason": exc.reason}})
            continue
        front = "parse html" if kind == "html" else "parse text/markdown"
        spent["read (file + sidecar)"] += t1 - t0
        spent["decode + sha256"] += t2 - t1
        spent[front] += t3 - t2
        spent["normalize (build_record)"] += t4 - t3
        spent["record -> dict (model_dump)"] += t5 - t4
        spent["prepare: validate, dump, digests, app file"] += t6 - t5
        pages[front] += 1
    out = args.cache / "runs" / "out-stages"
    shutil.rmtree(out, ignore_errors=True)
    writer.POOL_MIN_RECORDS = len(results) + 1  # the chunk tables too are built (and timed) here
    t = clock()
    publish(results, out, inputs=len(results))
    spent["publish (parent, tables built here)"] = clock() - t
    shutil.rmtree(stage_root, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)

    n = len(files)
    total = sum(spent.values())
    print(f"\n{'stage':40s} {'CPU s':>8s} {'ms/page':>8s} {'share':>7s} {'x floor':>8s}")
    for stage, s in spent.items():
        print(f"{stage:40s} {s:8.2f} {1000 * s / n:8.2f} {s / total:7.1%} {s / floor:8.2f}")
    label = "pipeline total (one process)"
    print(f"{label:40s} {total:8.2f} {1000 * total / n:8.2f} {'':7s} {total / floor:8.2f}")
    print(f"{'floor: BeautifulSoup(page, lxml)':40s} {floor:8.2f} {1000 * floor / n:8.2f}")
    for front, k in pages.items():
        print(f"  {front}: {k} pages, {1000 * spent[front] / k:.2f} ms each")
    print(
        f"\nbudget for ratio 1.6 on 2 cores: pipeline CPU <= 1.25 x floor = {1.25 * floor:.1f} s; "
        f"now {total / floor:.2f} x floor -> best possible wall ratio about {2 * floor / total:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
