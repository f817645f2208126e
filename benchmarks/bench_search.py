"""Cost of the derived files of a version (search index, app JSON files, data package) and search latency.

    .venv/bin/python benchmarks/bench_search.py                 # 10,000 synthetic pages
    .venv/bin/python benchmarks/bench_search.py --pages 50000
    .venv/bin/python benchmarks/bench_search.py --out-dir processed   # an already published dataset

The synthetic corpus (``gen_corpus.py``, cached under ``/tmp/procpipe_bench``) is published once
without Prefect. Each writer is then timed alone on that version's files (best of ``--repeat`` runs,
written into a scratch folder): ``search.sqlite`` (FTS5 build from procedures.jsonl), ``json/``
(one file per record, each fsynced, plus the index) and ``datapackage.json``; per 1,000 records.
Query latency is the median and 95th percentile over queries of four kinds drawn from the records'
own titles and names: two plain words, a phrase, a prefix, and a code. Figures only: nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus  # noqa: E402


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _queries(version: Path, n: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    recs = [json.loads(line) for line in (version / "procedures.jsonl").open(encoding="utf-8")]
    names = [str(r.get("procedure_name") or r.get("title") or "") for r in recs]
    words_of = [[w.strip(",.;:()").lower() for w in name.split()] for name in names]
    words_of = [[w for w in ws if len(w) > 3 and w.isalpha()] for ws in words_of]
    words_of = [ws for ws in words_of if len(ws) >= 2]
    out: dict[str, list[str]] = {"words": [], "phrase": [], "prefix": [], "code": []}
    for _ in range(n):
        ws = rng.choice(words_of)
        i = rng.randrange(len(ws) - 1)
        out["words"].append(" ".join(rng.sample(ws, 2)))
        out["phrase"].append(f'"{ws[i]} {ws[i + 1]}"')
        out["prefix"].append(ws[i][: max(3, len(ws[i]) - 3)] + "*")
        out["code"].append(rng.choice(recs)["code"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind")
    parser.add_argument("--out-dir", type=Path, help="time a published dataset (no corpus, no publish)")
    args = parser.parse_args(argv)

    from pipeline.process import run_local
    from pipeline.publish import extras, latest_version, read_manifest
    from pipeline.publish.appfiles import write_app_files
    from pipeline.publish.datapackage import write_datapackage
    from pipeline.publish.search_index import build_index
    from pipeline.search import search

    work = Path(tempfile.mkdtemp(prefix="procpipe-bench-search-"))
    try:
        if args.out_dir:
            out = args.out_dir
            records = read_manifest(latest_version(out) or out / "latest").counts.records
            print(f"{out}: {records} records")
        else:
            out = work / "out"
            t0 = time.perf_counter()
            records = run_local(corpus(args.pages, args.seed), out, workers=2).counts.records
            publish_s = time.perf_counter() - t0
            print(f"{args.pages} pages -> {records} records, published with every writer in {publish_s:.1f}s")
        version = out / "latest"
        k = records / 1000

        scratch = work / "scratch"

        def fresh() -> Path:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            for name in ("procedures.jsonl", *(p.name for p in version.glob("*.parquet"))):
                (scratch / name).symlink_to(version / name)
            return scratch

        fresh()
        jsonl_path = version / "procedures.jsonl"
        index_s = _best(lambda: build_index(jsonl_path, scratch / "search.sqlite"), args.repeat)
        app_s = _best(lambda: write_app_files(fresh()), args.repeat)
        dp_s = _best(lambda: write_datapackage(fresh()), args.repeat)
        size = (version / "search.sqlite").stat().st_size
        jsonl = (version / "procedures.jsonl").stat().st_size
        print(f"search.sqlite   {index_s:7.2f}s  {index_s / k * 1000:7.1f} ms per 1,000 records"
              f"  ({size / 2**20:.1f} MiB, {size / jsonl:.2f}x procedures.jsonl)")  # fmt: skip
        print(f"json/ files     {app_s:7.2f}s  {app_s / k * 1000:7.1f} ms per 1,000 records (one syncfs)")
        print(f"datapackage     {dp_s:7.2f}s  {dp_s / k * 1000:7.1f} ms per 1,000 records")
        print(f"writers in order: {[w.__name__ for w in [*extras.WRITERS, extras.LAST]]}")

        queries = _queries(version, args.queries, args.seed)
        search("warm up", out_dir=out)
        for kind, qs in queries.items():
            lat = []
            hits = 0
            for q in qs:
                t = time.perf_counter()
                found = search(q, out_dir=out)
                lat.append((time.perf_counter() - t) * 1000)
                hits += bool(found)
            lat.sort()
            p95 = lat[int(0.95 * (len(lat) - 1))]
            print(f"query {kind:<7} median {statistics.median(lat):6.2f} ms  p95 {p95:6.2f} ms"
                  f"  ({hits}/{len(qs)} with hits, e.g. {qs[0]!r})")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
