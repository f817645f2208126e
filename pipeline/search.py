"""Full-text search over a published version (its ``search.sqlite``, built at publish time).

``search(query, *, system=None, limit=10, out_dir="processed", version="latest") -> list[dict]``;
each hit is ``{"code_system", "code", "title", "snippet", "score"}``, best first.

Query language, the way a search box reads it:

- plain words: every word must match (English stemming: ``strips`` finds ``strip``); when fewer
  than ``limit`` records match every word, records matching some of them follow, ranked lower
- ``"spinal stenosis"``: a phrase; ``lamin*``: a prefix; ``OR`` between two terms: either
- a code (``63185``, ``a4253``, ``cpt:63185``): that record first, then the text matches

Ranking is BM25 with column weights (names and title above summary, summary above the rest; see
``pipeline.publish.search_index``). ``score`` is BM25 relevance, higher is better; an exact code
match scores above every text match. The snippet comes from the column that matched best, its
hits marked ``**like this**`` (``marks`` changes the markers).
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import types
from contextlib import closing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.publish.search_index import INDEX_FILE, WEIGHTS

#: Internal hit markers (control characters never found in record text), replaced by ``marks``.
_OPEN, _CLOSE = "\x02", "\x03"
_ELLIPSIS = "…"
SNIPPET_TOKENS = 16
_TERM = re.compile(r'"([^"]*)"?|(\S+)')
_WORD = re.compile(r"\w", re.UNICODE)


class SearchHit(BaseModel):
    """One search result (``procpipe search --json`` prints a list of these)."""

    model_config = ConfigDict(extra="forbid")

    code_system: str
    code: str
    title: str | None = None
    snippet: str = Field(description="the best matching passage, hits marked **like this**")
    score: float = Field(description="BM25 relevance, higher is better; an exact code match scores highest")


class SearchIndexMissing(FileNotFoundError):
    """The version has no search index (published before search existed, or not a version folder)."""


def parse_query(query: str) -> tuple[list[str], bool]:
    """The query as FTS5 terms (each safely quoted) and whether the user joined them with ``OR``.

    Anything FTS5 would read as syntax (column filters, ``NEAR``, brackets, ``-``, ``:``) is quoted
    away, so no query is an error: a term without a letter or digit is dropped.
    """
    terms: list[str] = []
    explicit_or = False
    pending_or = False
    for m in _TERM.finditer(query):
        phrase, word = m.group(1), m.group(2)
        if word == "OR":
            pending_or = bool(terms)
            continue
        prefix = False
        text = phrase
        if text is None:
            prefix = word.endswith("*")
            text = word.rstrip("*")
        if not _WORD.search(text or ""):
            continue
        term = '"' + text.replace('"', '""') + '"' + ("*" if prefix else "")
        if pending_or:
            explicit_or = True
            terms[-1] = f"{terms[-1]} OR {term}"
        else:
            terms.append(term)
        pending_or = False
    return terms, explicit_or


def _index_path(out_dir: str | Path, version: str) -> Path:
    from pipeline.load import version_dir

    folder = version_dir(out_dir, version)
    path = folder / INDEX_FILE
    if not path.is_file():
        raise SearchIndexMissing(
            f"{folder.name} has no {INDEX_FILE} (published before search existed): publish a new version "
            "with `procpipe process`"
        )
    return path


def _connect(path: Path) -> sqlite3.Connection:
    # read-only and immutable: no journal or lock files in a published version folder
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    db.row_factory = sqlite3.Row
    return db


def _weights(db: sqlite3.Connection) -> list[float]:
    row = db.execute("SELECT value FROM meta WHERE key = 'weights'").fetchone()
    stored = json.loads(row[0]) if row else WEIGHTS
    return [float(stored.get(col, 1.0)) for col in WEIGHTS]


def _system(system: str | None) -> str | None:
    if system is None:
        return None
    from pipeline.normalize.codes import canonical_system
    from schemas import CODE_PATTERNS

    canon = canonical_system(system)
    if canon not in CODE_PATTERNS:
        raise ValueError(f"unknown code system {system!r} (one of: {', '.join(CODE_PATTERNS)})")
    return canon


def _code_hits(db: sqlite3.Connection, query: str, system: str | None) -> list[sqlite3.Row]:
    """Records whose code (or ``system:code`` record id) is the whole query."""
    text = query.strip()
    if not text or " " in text:
        return []
    sys_part, _, code = text.rpartition(":")
    code = code.upper()
    rows = db.execute(
        "SELECT rowid, record_id, code_system, code, title FROM docs WHERE code = ?", (code,)
    ).fetchall()
    if sys_part:
        from pipeline.normalize.codes import canonical_system

        wanted = canonical_system(sys_part)
        rows = [r for r in rows if r["code_system"] == wanted]
    if system:
        rows = [r for r in rows if r["code_system"] == system]
    return rows


def _text_hits(
    db: sqlite3.Connection, match: str, system: str | None, limit: int, exclude: set[int]
) -> list[dict[str, Any]]:
    if limit <= 0:
        return []
    weights = ", ".join(str(w) for w in _weights(db))
    where = "fts MATCH ?"
    params: list[Any] = [match]
    if system:
        where += " AND fts.code_system = ?"
        params.append(system)
    if exclude:
        where += f" AND fts.rowid NOT IN ({', '.join('?' * len(exclude))})"
        params.extend(sorted(exclude))
    sql = f"""
        SELECT fts.rowid AS rowid, d.code_system, d.code, d.title,
               snippet(fts, -1, '{_OPEN}', '{_CLOSE}', '{_ELLIPSIS}', {SNIPPET_TOKENS}) AS snippet,
               bm25(fts, {weights}) AS rank
        FROM fts JOIN docs AS d ON d.rowid = fts.rowid
        WHERE {where}
        ORDER BY rank, d.record_id
        LIMIT ?
    """
    params.append(limit)
    return [
        {
            "rowid": r["rowid"],
            "code_system": r["code_system"],
            "code": r["code"],
            "title": r["title"],
            "snippet": " ".join(str(r["snippet"]).split()),  # one line: section breaks become spaces
            "score": round(-float(r["rank"]), 4),
        }
        for r in db.execute(sql, params)
    ]


def search_raw(
    query: str,
    *,
    system: str | None = None,
    limit: int = 10,
    out_dir: str | Path = "processed",
    version: str = "latest",
) -> list[dict[str, Any]]:
    """Like ``search``, with snippets marked by ``\\x02``/``\\x03`` (for renderers that style hits)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    system = _system(system)
    with closing(_connect(_index_path(out_dir, version))) as db:
        code_rows = _code_hits(db, query, system)
        terms, explicit_or = parse_query(query)
        hits: list[dict[str, Any]] = []
        seen = {r["rowid"] for r in code_rows}
        if terms:
            hits = _text_hits(db, " AND ".join(f"({t})" for t in terms), system, limit, seen)
            if len(terms) > 1 and not explicit_or and len(hits) < limit:
                # fewer than `limit` records hold every word: fill with records holding some of them
                seen |= {h["rowid"] for h in hits}
                floor = min((h["score"] for h in hits), default=None)
                more = _text_hits(db, " OR ".join(terms), system, limit - len(hits), seen)
                for h in more:
                    if floor is not None:  # partial matches never outscore full ones
                        h["score"] = round(min(h["score"], floor * 0.999), 4)
                hits += more
    top = max((h["score"] for h in hits), default=0.0)
    out = [
        {
            "code_system": r["code_system"],
            "code": r["code"],
            "title": r["title"],
            "snippet": f"{_OPEN}{r['code']}{_CLOSE} {r['title'] or ''}".strip(),
            "score": round(max(top, 0.0) + 1.0, 4),
        }
        for r in code_rows
    ]
    for h in hits:
        h.pop("rowid")
        out.append(h)
    return out[:limit]


def search(
    query: str,
    *,
    system: str | None = None,
    limit: int = 10,
    out_dir: str | Path = "processed",
    version: str = "latest",
    marks: tuple[str, str] = ("**", "**"),
) -> list[dict[str, Any]]:
    """Ranked full-text search of the published records; see the module docstring for the query syntax.

    Raises ``FileNotFoundError`` (one line) when nothing is published or the version has no index,
    ``ValueError`` for an unknown ``system`` or a ``limit`` below 1.
    """
    hits = search_raw(query, system=system, limit=limit, out_dir=out_dir, version=version)
    for h in hits:
        h["snippet"] = h["snippet"].replace(_OPEN, marks[0]).replace(_CLOSE, marks[1])
    return hits


class _CallableModule(types.ModuleType):
    """``pipeline.search`` is both this module and the function: ``import pipeline.search`` makes the
    module the package attribute, so calling the module calls ``search``."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
