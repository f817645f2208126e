"""Scraper throughput and politeness against the local fixture site (tests/scrape_site.py).

    .venv/bin/python benchmarks/bench_scrape.py
    .venv/bin/python benchmarks/bench_scrape.py --pages 200 --latency 0.05 --concurrency 1,4,16 --rate 20

Two measurements, each crawl in a fresh Python process (so the server's clock in this process is not
skewed by the crawler competing for the same GIL), into a fresh temporary raw store:

1. throughput: ``--pages`` pages, every response delayed by ``--latency`` seconds at the server, with the
   rate limit out of the way (``--rate 1000``), at each ``--concurrency``: pages/s over the crawl's own
   elapsed time (robots.txt included).
2. politeness: ``--window-pages`` pages at ``--rate R`` and concurrency 4: the most requests the server
   saw start inside any one-second window, against R (the promise: never more than R).

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from scrape_site import FixtureSite  # noqa: E402 - the fixture site lives with the tests

DRIVER = """
import json, sys
from pipeline.sources.config import CrawlJob, CrawlSettings
from pipeline.sources.crawl import run_crawl
urls, raw, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
job = CrawlJob(urls=[u for u in open(urls).read().split() if u])
r = run_crawl(job, CrawlSettings(**settings), raw)
print(json.dumps({"elapsed_s": r.elapsed_s, **{k: v for k, v in r.summary().items() if k != "failed"},
                  "failed": len(r.failed)}))
"""


def crawl(site: FixtureSite, pages: int, settings: dict[str, object]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        urls = Path(tmp, "urls.txt")
        plain = [p for p in site.fetchable_pages if not p.behaviour]  # no 429/503 pages: no pauses
        if pages > len(plain):
            raise SystemExit(f"--pages at most {len(plain)}")
        chosen = plain[:pages]
        urls.write_text("\n".join(site.url(p.path) for p in chosen) + "\n")
        site.reset_log()
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, str(urls), str(Path(tmp, "raw")), json.dumps(settings)],
            capture_output=True, text=True, cwd=ROOT, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"crawl failed:\n{proc.stderr}")
        result: dict[str, float] = json.loads(proc.stdout)
        result["max_in_1s"] = site.max_in_window(1.0)
        result["requests"] = len(site.hits())
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds the server waits per response")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    ap.add_argument("--rate", type=float, default=20.0, help="rate for the politeness run")
    ap.add_argument("--window-pages", type=int, default=100)
    ap.add_argument(
        "--no-fsync", action="store_true", help="store without fsync (default: fsync, as shipped)"
    )
    args = ap.parse_args()

    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    with FixtureSite(latency=args.latency, crawl_delay=None) as site:
        print(
            f"throughput: {args.pages} pages, {args.latency * 1000:.0f} ms server latency, rate 1000/s, "
            f"fsync {'off' if args.no_fsync else 'on'}"
        )
        for c in [int(x) for x in args.concurrency.split(",")]:
            r = crawl(site, args.pages, {"rate": 1000.0, "concurrency": c, "durable": not args.no_fsync})
            print(
                f"  concurrency {c:>3}: {r['fetched'] / r['elapsed_s']:7.1f} pages/s "
                f"({r['fetched']} pages in {r['elapsed_s']:.2f}s, {r['failed']} failed)"
            )
        site.latency = 0.0
        r = crawl(site, args.window_pages, {"rate": args.rate, "concurrency": 4})
        print(
            f"politeness: --rate {args.rate:g}, concurrency 4, {r['requests']} requests: "
            f"at most {r['max_in_1s']} in any one-second window (limit {args.rate:g}); "
            f"{r['fetched'] / r['elapsed_s']:.1f} pages/s"
        )


if __name__ == "__main__":
    main()
