"""Long-running fuzz harness over parse_page and the front ends (not part of the default suite).

Runs the same properties as ``tests/fuzz/test_fuzz_pages.py`` with a large example budget and prints
figures: examples run, outcomes (records, rejects by reason), time. Exit status 1 on the first
falsifying example, which hypothesis prints with the seed to replay it (``--seed``).

    .venv/bin/python tests/fuzz/fuzz_parse.py --examples 100000
    .venv/bin/python tests/fuzz/fuzz_parse.py --examples 20000 --target hostile --seed 7
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from page_strategies import TARGETS, Case  # noqa: E402

from pipeline.errors import RejectedPage  # noqa: E402

_DIGITS = re.compile(r"\d+")


#: Examples per hypothesis run: hypothesis keeps every run's examples in memory, so a long budget is
#: spent in chunks with successive seeds (memory stays flat).
CHUNK = 1000


def run_target(name: str, examples: int, rng_seed: int | None) -> tuple[int, collections.Counter[str], float]:
    """Run one target for ``examples`` examples; returns (examples run, outcome counts, seconds)."""
    strategy, check = TARGETS[name]
    outcomes: collections.Counter[str] = collections.Counter()
    ran = [0]

    def one(case: Case) -> None:
        ran[0] += 1
        result: Any = check(case)
        if isinstance(result, RejectedPage):
            outcomes[f"reject[{result.stage}] {_DIGITS.sub('N', result.reason)[:70]}"] += 1
        elif result is None:
            outcomes["document"] += 1
        else:
            outcomes["record"] += 1

    base = random.randrange(2**32) if rng_seed is None else rng_seed
    start = time.perf_counter()
    done = 0
    for i in range((examples + CHUNK - 1) // CHUNK):
        n = min(CHUNK, examples - done)
        test = settings(
            max_examples=n,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )(given(strategy)(one))
        try:
            seed(base + i)(test)()
        except BaseException:
            print(f"replay: python tests/fuzz/fuzz_parse.py --target {name} --seed {base + i} --examples {n}")
            raise
        done += n
    return ran[0], outcomes, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10_000, help="examples per target (default 10000)")
    ap.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--top", type=int, default=12, help="outcome lines to print per target")
    args = ap.parse_args(argv)
    names = list(TARGETS) if args.target == "all" else [args.target]
    total = 0
    t0 = time.perf_counter()
    for name in names:
        try:
            ran, outcomes, secs = run_target(name, args.examples, args.seed)
        except Exception as exc:  # noqa: BLE001 - hypothesis has printed the falsifying example
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return 1
        total += ran
        print(f"{name}: {ran} examples in {secs:.1f} s ({ran / secs:.0f}/s), no failure", flush=True)
        for what, n in outcomes.most_common(args.top):
            print(f"  {n:7d}  {what}")
    print(f"total: {total} examples in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
