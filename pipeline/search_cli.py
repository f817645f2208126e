"""``procpipe search "QUERY" [--system cpt] [--limit 10] [--json] [--out-dir DIR] [--version ID]``.

It mirrors ``pipeline.search``: ranked hits of the published version's search index. Without
``--json`` a numbered list (system, code, score, title, and the snippet with its hits highlighted);
with ``--json`` exactly a JSON array of ``{"code_system", "code", "title", "snippet", "score"}``
(``schemas/search-results.schema.json``). Exit codes: 0 searched (no hit is not an error: the list
is empty and a line on stderr says so), 1 nothing published or no index, 2 usage (empty query,
unknown code system).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

_HIT = re.compile("\x02(.*?)\x03", re.S)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``search`` on the main parser."""
    p = subparsers.add_parser(
        "search",
        help="full-text search of the published records (BM25, stemming, phrases, prefixes)",
        description='Search titles, names and section text: plain words, "a phrase", prefix*, '
        "a OR b; a code (63185, A4253) returns that record first.",
    )
    p.add_argument("query", metavar="QUERY", help='words, "a phrase", prefix*, or a code')
    p.add_argument("--system", metavar="SYSTEM", help="only this code system (cpt, hcpcs, icd10pcs, cdt)")
    p.add_argument("--limit", type=_positive, default=10, metavar="N", help="at most N hits (10)")
    p.add_argument("--json", action="store_true", help="print a JSON array of hits")
    p.add_argument("--out-dir", default="processed", metavar="DIR", help="published datasets (processed)")
    p.add_argument("--version", default="latest", help="a run id from OUT_DIR/versions (latest)")
    p.set_defaults(func=cmd_search, handler=cmd_search)


def _styled(snippet: str) -> Any:
    from rich.text import Text

    text = Text()
    pos = 0
    for m in _HIT.finditer(snippet):
        text.append(snippet[pos : m.start()])
        text.append(m.group(1), style="bold yellow")
        pos = m.end()
    text.append(snippet[pos:])
    return text


def cmd_search(args: argparse.Namespace) -> int:
    from pipeline.search import search, search_raw

    query = str(args.query)
    if not query.strip():
        raise UsageError("empty query: give words, a phrase in quotes, a prefix* or a code")
    where: dict[str, Any] = {"system": args.system, "limit": args.limit, "out_dir": args.out_dir}
    try:
        if args.json:
            print(json.dumps(search(query, **where, version=args.version), ensure_ascii=False, indent=2))
            return 0
        hits = search_raw(query, **where, version=args.version)
    except ValueError as exc:  # an unknown --system
        raise UsageError(str(exc)) from None
    if not hits:
        print(f"no records match {query!r} in {Path(args.out_dir) / args.version}", file=sys.stderr)
        return 0
    from rich.console import Console
    from rich.padding import Padding
    from rich.text import Text

    console = Console(highlight=False)
    width = len(str(len(hits)))
    for n, hit in enumerate(hits, 1):
        head = Text(f"{n:>{width}}. ", style="dim")
        head.append(f"{hit['code_system'].upper()} {hit['code']}", style="bold cyan")
        head.append(f"  {hit['score']:.2f}  ", style="dim")
        head.append(hit["title"] or "")
        console.print(head, overflow="ellipsis", no_wrap=True)
        console.print(Padding(_styled(hit["snippet"]), (0, 0, 0, width + 2)))
    return 0
