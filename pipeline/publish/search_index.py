"""The full-text search index of a version: ``search.sqlite``, an SQLite FTS5 table built at publish time.

Why SQLite FTS5: it ships with Python (``sqlite3``, no extension to download at run time), ranks with
BM25 (``bm25()``, with a weight per column), stems English with the ``porter`` tokenizer, understands
phrase (``"spinal stenosis"``) and prefix (``lamin*``) queries, and cuts a snippet around the hits
(``snippet()``). The index is one file inside the version folder, so it is versioned, hashed in the
manifest and switched with ``latest`` like every other file; readers open it read-only.

One FTS row per record, columns (weight in ``WEIGHTS``):

- ``code``: the code, so a code or a prefix of one (``631*``) matches too
- ``title``: the page title
- ``names``: procedure name, common names, technical term (the words people use)
- ``summary``: the Summary and Purpose sections
- ``body``: the preamble and every other section: headings, text, list items, sub-sections

``record_id`` and ``code_system`` are stored unindexed beside them, for the ``--system`` filter.
The ``meta`` table keeps the index format and the weights, so a reader ranks with the weights the
index was built for.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from schemas import FileEntry

INDEX_FILE = "search.sqlite"
INDEX_FORMAT = "1"
TOKENIZER = "porter unicode61 remove_diacritics 2"
#: FTS columns in table order, and their BM25 weights (names and title count most).
WEIGHTS: dict[str, float] = {"code": 10.0, "title": 5.0, "names": 8.0, "summary": 2.0, "body": 1.0}
#: Sections not indexed in ``body``: the name section repeats ``names``; similar codes are other records.
_NOT_BODY = frozenset({"name", "summary", "purpose", "similar_codes"})
_SUMMARY = ("summary", "purpose")
_BATCH = 500
_AUTOMERGE_DEFAULT = 4  # FTS5's default 'automerge' setting


def _add_items(items: list[dict[str, Any]], out: list[str]) -> None:
    """Each item's line ("label: text" or text), depth first in page order (items as dumped:
    ``label``, ``text`` and ``items`` always there)."""
    for item in items:
        label, text = item["label"], item["text"]
        out.append(f"{label}: {text}" if label else text)
        if item["items"]:
            _add_items(item["items"], out)


def _add_section(section: dict[str, Any], out: list[str], *, heading: bool) -> None:
    if heading and section.get("heading"):
        out.append(str(section["heading"]))
    if section.get("text"):
        out.append(str(section["text"]))
    _add_items(section.get("items") or [], out)
    for sub in section.get("subsections") or []:
        if sub.get("heading"):
            out.append(str(sub["heading"]))
        if sub.get("text"):
            out.append(str(sub["text"]))
        _add_items(sub.get("items") or [], out)


def index_columns(record: dict[str, Any]) -> dict[str, str]:
    """The text of each FTS column for one record (a ``procedures.jsonl`` object)."""
    names = [record.get("procedure_name"), *(record.get("common_names") or []), record.get("technical_term")]
    summary: list[str] = []
    body: list[str] = list(record.get("preamble") or [])
    for section in record.get("sections") or []:
        key = section.get("key")
        if key in _SUMMARY:
            _add_section(section, summary, heading=False)
        elif key not in _NOT_BODY:
            _add_section(section, body, heading=True)
    return {
        "code": str(record.get("code") or ""),
        "title": str(record.get("title") or ""),
        "names": "; ".join(dict.fromkeys(n for n in names if n)),
        "summary": "\n".join(summary),
        "body": "\n".join(body),
    }


def create_schema(db: sqlite3.Connection) -> None:
    cols = ", ".join(WEIGHTS)
    db.executescript(
        f"""
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE docs(
            rowid INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, code_system TEXT NOT NULL,
            code TEXT NOT NULL, title TEXT
        );
        CREATE INDEX docs_code ON docs(code);
        CREATE VIRTUAL TABLE fts USING fts5({cols}, code_system UNINDEXED, tokenize = '{TOKENIZER}');
        """
    )
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("format", INDEX_FORMAT), ("tokenizer", TOKENIZER), ("weights", json.dumps(WEIGHTS))],
    )


class IndexBuilder:
    """Builds ``search.sqlite`` from records fed one at a time (in ``record_id`` order), so publish
    can index each record as it writes it instead of reading ``procedures.jsonl`` back."""

    def __init__(self, index_path: Path) -> None:
        if index_path.exists():
            index_path.unlink()
        self.path, self.count = index_path, 0
        # inserts run in one background thread (sqlite tokenizes with the GIL released, so indexing
        # overlaps the rest of publishing); the connection is used by one thread at a time
        self._db = sqlite3.connect(index_path, check_same_thread=False)
        self._docs: list[tuple[Any, ...]] = []
        self._fts: list[tuple[Any, ...]] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="procpipe-search-index")
        self._pending: deque[Future[None]] = deque()
        try:
            self._db.execute("PRAGMA journal_mode = OFF")  # a half-written index dies with its folder
            self._db.execute("PRAGMA synchronous = OFF")  # the caller fsyncs the finished file
            create_schema(self._db)
            # no incremental merging while rows go in: ``close`` merges every segment once
            # ('optimize'): the same index for ~12% fewer instructions at 8,000 records (callgrind)
            self._db.execute("INSERT INTO fts(fts, rank) VALUES ('automerge', 0)")
        except BaseException:
            self._thread.shutdown()
            self._db.close()
            raise

    def add(self, rec: dict[str, Any]) -> None:
        """Index one record (a ``procedures.jsonl`` object)."""
        self.add_digest(digest(rec))

    def add_digest(self, d: tuple[tuple[Any, ...], tuple[Any, ...]]) -> None:
        """Index one record given as its ``digest``."""
        n = self.count = self.count + 1
        doc, fts = d
        self._docs.append((n, *doc))
        self._fts.append((n, *fts))
        if len(self._docs) >= _BATCH:
            self._send()

    def _send(self) -> None:
        """Hand the rows gathered so far to the insert thread (at most two batches wait there)."""
        docs, fts = self._docs, self._fts
        self._docs, self._fts = [], []
        while len(self._pending) >= 2:
            self._pending.popleft().result()  # raises what the insert raised
        self._pending.append(self._thread.submit(_flush, self._db, docs, fts))

    def _wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> int:
        """Finish the index (meta, optimize, commit); returns the number of records."""
        try:
            self._wait()
            _flush(self._db, self._docs, self._fts)
            self._db.execute("INSERT INTO meta VALUES ('records', ?)", (str(self.count),))
            self._db.execute("INSERT INTO fts(fts) VALUES ('optimize')")
            # back to SQLite's default, so whoever adds rows to the index later merges as usual
            self._db.execute(f"INSERT INTO fts(fts, rank) VALUES ('automerge', {_AUTOMERGE_DEFAULT})")
            self._db.commit()
        finally:
            self._thread.shutdown(cancel_futures=True)
            self._db.close()
        return self.count

    def abort(self) -> None:
        """Drop the connection without finishing (the folder is being thrown away)."""
        self._thread.shutdown(cancel_futures=True)
        self._db.close()


def digest(rec: dict[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """What the index keeps of one record: its ``docs`` row and its FTS columns (without rowid)."""
    doc = (rec["record_id"], rec["code_system"], rec["code"], rec.get("title"))
    return doc, (*index_columns(rec).values(), rec["code_system"])


def build_index(records_jsonl: Path, index_path: Path) -> int:
    """Write an FTS5 index of every record in ``records_jsonl`` to ``index_path``; returns the count."""
    builder = IndexBuilder(index_path)
    try:
        with records_jsonl.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    builder.add(json.loads(line))
    except BaseException:
        builder.abort()
        raise
    return builder.close()


def _flush(db: sqlite3.Connection, docs: list[tuple[Any, ...]], fts: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" * (len(WEIGHTS) + 2))
    db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?)", docs)
    db.executemany(f"INSERT INTO fts(rowid, {', '.join(WEIGHTS)}, code_system) VALUES ({marks})", fts)
    docs.clear()
    fts.clear()


def write_search_index(folder: Path) -> dict[str, FileEntry]:
    """Publish-time writer: ``search.sqlite`` from the version's ``procedures.jsonl``."""
    from pipeline.publish.extras import file_entry

    path = folder / INDEX_FILE
    rows = build_index(folder / "procedures.jsonl", path)
    return {INDEX_FILE: file_entry(path, rows)}


class SearchIndexSink:
    """Publish-time writer fed by the record stream: ``search.sqlite`` without re-reading the records."""

    def __init__(self, folder: Path) -> None:
        self._builder = IndexBuilder(folder / INDEX_FILE)

    @staticmethod
    def digest(line: bytes, rec: dict[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return digest(rec)

    @staticmethod
    def take(digest: tuple[tuple[Any, ...], tuple[Any, ...]]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return digest

    def add(self, line: bytes, digest: tuple[tuple[Any, ...], tuple[Any, ...]]) -> None:
        self._builder.add_digest(digest)

    def close(self) -> dict[str, FileEntry]:
        from pipeline.publish.extras import file_entry

        rows = self._builder.close()
        return {INDEX_FILE: file_entry(self._builder.path, rows)}

    def abort(self) -> None:
        self._builder.abort()
