"""A large corpus of REAL page content in every markup style, for the issue-5 figures.

    .venv/bin/python benchmarks/gen_real_corpus.py OUT -n 20000 [--source ../shared/corpus] [--seed 2]

The synthetic corpus (``gen_corpus.py``) is our own words in our own templates; this one is the
real procedure pages of a corpus folder (``index.jsonl`` + text renderings, e.g. ``../shared/corpus``)
written the way the judge writes them: each page as its text rendering, or rendered by the judge's
``render_html.py`` (found beside the corpus, in ``../judge``) in one of its five HTML styles, with a
``.meta.json`` sidecar holding the URL and content type. Nothing is copied into the project: the
pages are read from the corpus folder when the script runs and written only to OUT.

To make ``n`` distinct records out of a few dozen pages, copy ``i`` of a page gets its own code of
the page's code system in its URL (the pipeline takes the code from the URL), so publishing folds
nothing and writes ``n`` records, as a crawl of ``n`` different codes would. Pages whose code system
the corpus does not give are left out. The order of pages, styles and codes is shuffled by ``seed``;
the same ``(n, seed, source)`` gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "corpus"
#: every markup style: the text rendering itself, then the judge's five HTML styles
TEXT = "text"
HCPCS_LETTERS = "ABCEGHJKLMPQRSTV"
SEARCH_LINE = "Search all medical codes"  # the site's search box, not the title


def _render_html(source: Path) -> tuple[list[str], Any]:
    judge = source.parent / "judge"
    if not (judge / "render_html.py").is_file():
        raise SystemExit(f"render_html.py not found in {judge} (the judge folder beside the corpus)")
    sys.path.insert(0, str(judge))
    from render_html import STYLES, render  # type: ignore[import-not-found]

    return list(STYLES), render


def _code(system: str, i: int) -> str:
    """The i-th code of a system, distinct for every i below 90,000 (cpt) or 160,000 (hcpcs)."""
    if system == "cpt":
        return f"{10000 + i % 90000:05d}"
    if system == "hcpcs":
        return f"{HCPCS_LETTERS[(i // 10000) % len(HCPCS_LETTERS)]}{i % 10000:04d}"
    raise ValueError(system)


_CODE_IN_URL = re.compile(r"/([0-9A-Z]{5})(?=-|$|/|\?)")


def _url(url: str, code: str) -> str:
    """The page's URL with its code replaced (the last 5-character code in the path)."""
    found = list(_CODE_IN_URL.finditer(url))
    if not found:
        return url.rstrip("/") + f"/{code}"
    m = found[-1]
    return url[: m.start(1)] + code + url[m.end(1) :]


def generate(out_dir: Path, n: int, seed: int = 2, source: Path = DEFAULT_SOURCE) -> dict[str, int]:
    """Write ``n`` pages (and sidecars) into ``out_dir``; returns how many of each style."""
    rows = [json.loads(line) for line in (source / "index.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("code_system") in ("cpt", "hcpcs")]
    if not rows:
        raise SystemExit(f"no cpt/hcpcs pages in {source / 'index.jsonl'}")
    styles, render = _render_html(source)
    texts = {r["path"]: (source / r["path"]).read_text(encoding="utf-8") for r in rows}
    rng = random.Random(seed)
    kinds = [TEXT, *styles]
    counters = {"cpt": 0, "hcpcs": 0}
    made: dict[str, int] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        row = rows[rng.randrange(len(rows))]
        kind = kinds[rng.randrange(len(kinds))]
        system = row["code_system"]
        code = _code(system, counters[system])
        counters[system] += 1
        stem = f"p{i:06d}-{system}-{code}"
        text = texts[row["path"]]
        meta = {"url": _url(row["url"], code)}
        if kind == TEXT:
            (out_dir / f"{stem}.txt").write_text(text, encoding="utf-8")
            meta["content_type"] = "text/plain; charset=utf-8"
        else:
            lines = [x.strip() for x in text.splitlines() if x.strip() not in ("", SEARCH_LINE)]
            title = lines[0][:60] if lines else "code page"
            (out_dir / f"{stem}.html").write_text(render(text, kind, title), encoding="utf-8")
            meta["content_type"] = "text/html; charset=utf-8"
        (out_dir / f"{stem}.meta.json").write_text(json.dumps(meta), encoding="utf-8")
        made[kind] = made.get(kind, 0) + 1
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="corpus folder (index.jsonl)")
    args = ap.parse_args(argv)
    made = generate(args.out, args.n, args.seed, args.source)
    print(f"{args.n} pages in {args.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(made.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
