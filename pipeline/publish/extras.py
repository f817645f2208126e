"""Derived files of a version, written after the core tables and before the manifest.

Two kinds of writer, both ending in ``{file name: FileEntry}`` for what they wrote, so the manifest
lists and hashes those files too:

- a *sink* (``SINKS``: factories taking the version folder) is fed every published record while the
  core tables are written, then ``close()``; it never reads the records back from disk and holds
  none of them. Each record meets the sink twice: ``digest(line, record)`` as it arrives and wins
  its code so far (``line``: its line of procedures.jsonl, ``record``: its parsed JSON, not to be
  changed; returns the small picklable part the sink needs; it runs while the workers still parse,
  and may be called again for the same code when a later page wins), then ``add(line, digest)``
  for each published record in ``record_id`` order. A record prepared in a worker
  (``prepare.py``) comes with its digest already made there by the sink's *preparer* (``PREPARERS``,
  in the order of ``SINKS``: ``prepare(line, record, stage)``, where ``stage`` is a folder the
  preparer may write into, or None); publish hands such a digest to ``take(digest)`` instead of
  calling ``digest``, and ``take`` returns what ``add`` gets;
- a folder writer (``WRITERS``) takes the finished version folder (procedures.jsonl, the Parquet
  tables, rejects and duplicates) after the tables. Writers run in the order of ``WRITERS``;
  ``LAST`` (the Frictionless data package, which describes the tables found in the folder) always
  runs after all of them, so a table written by a writer registered later is still described.

The derived files (see each module):

- ``search.sqlite``: the full-text search index (search_index.py)
- ``json/<system>/<code>.json`` and ``json/index.json``: files an app can serve (appfiles.py)
- ``datapackage.json``: a Frictionless Data Package v2 describing every Parquet table (datapackage.py)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from schemas import FileEntry

Writer = Callable[[Path], dict[str, FileEntry]]


class Sink(Protocol):
    """A derived file written from the record stream (see the module's docstring)."""

    def digest(self, line: bytes, record: dict[str, Any]) -> Any: ...

    def take(self, digest: Any) -> Any: ...

    def add(self, line: bytes, digest: Any) -> None: ...

    def close(self) -> dict[str, FileEntry]: ...

    def abort(self) -> None: ...


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's data to disk (folders: where the OS allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_entry(path: Path, rows: int | None = None, *, fsync: bool = True) -> FileEntry:
    """sha256, size and rows of a written file; fsynced (the version is renamed into place after)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
        if fsync:
            os.fsync(fh.fileno())
    return FileEntry(sha256=digest.hexdigest(), rows=rows, bytes=path.stat().st_size)


def _search_index(folder: Path) -> Sink:
    from pipeline.publish.search_index import SearchIndexSink

    return SearchIndexSink(folder)


def _app_files(folder: Path) -> Sink:
    from pipeline.publish.appfiles import AppFilesSink

    return AppFilesSink(folder)


def _datapackage(folder: Path) -> dict[str, FileEntry]:
    from pipeline.publish.datapackage import write_datapackage

    return write_datapackage(folder)


#: Fed while the tables are written: the search index, the app files.
SINKS: list[Callable[[Path], Sink]] = [_search_index, _app_files]


def _prepare_search_index(line: bytes, record: dict[str, Any], stage: Path | None) -> Any:
    from pipeline.publish.search_index import digest

    return digest(record)


def _prepare_app_files(line: bytes, record: dict[str, Any], stage: Path | None) -> Any:
    from pipeline.publish.appfiles import prepare

    return prepare(line, record, stage)


#: Each sink's digest made in a worker, in the order of ``SINKS`` (see the module's docstring).
PREPARERS: list[Callable[[bytes, dict[str, Any], Path | None], Any]] = [
    _prepare_search_index,
    _prepare_app_files,
]
#: Run on the folder after the tables (and after the sinks closed).
WRITERS: list[Writer] = []
#: Runs after every writer in ``WRITERS``: it describes the Parquet files written before it.
LAST: Writer = _datapackage


def write_extras(folder: Path) -> dict[str, FileEntry]:
    """Run the folder writers, then ``LAST`` (the sinks ran with the tables)."""
    files: dict[str, FileEntry] = {}
    for writer in [*WRITERS, LAST]:
        files.update(writer(folder))
    return files
