"""Files an app can serve as they are: one JSON file per record and an index of them.

Layout inside a version folder::

    json/index.json              [{"code", "system", "title", "path", "sha256", "bytes"}, ...]
    json/<system>/<code>.json    one record, exactly its line of procedures.jsonl

``path`` is relative to ``json/`` (``cpt/63185.json``), so serving the ``json/`` folder as static
files makes ``index.json`` and every record reachable at once. The index is in ``record_id`` order.

The manifest lists ``json/index.json`` (rows = records) and the index carries each record file's
sha256 and size: one chain of hashes covers every file without a manifest entry per record (a
manifest of 100,000 entries would cost every reader of it). ``AppIndexEntry`` is the index's
contract (its JSON Schema is ``schemas/app-index.schema.json``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipeline.publish.extras import file_entry, fsync_path
from schemas import FileEntry

JSON_DIR = "json"
INDEX_NAME = "index.json"


class AppIndexEntry(BaseModel):
    """One record in ``json/index.json``."""

    model_config = ConfigDict(extra="forbid")

    code: str
    system: str = Field(description="code system: cpt, hcpcs, icd10pcs or cdt")
    title: str | None = None
    path: str = Field(description="the record's file, relative to json/ (cpt/63185.json)")
    sha256: str = Field(description="sha256 of the record's file")
    bytes: int


def _sync_tree(root: Path, files: list[Path]) -> None:
    """Make the written files durable before the version is renamed into place.

    One ``syncfs`` of the folder's file system where Linux offers it (an fsync per file costs ~3 ms
    each on a disk: 30 s for 10,000 records), else an fsync per file; then the folders.
    """
    if not _syncfs(root):
        for path in files:
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    for folder in sorted({p.parent for p in files} | {root}, key=lambda p: len(p.parts), reverse=True):
        fsync_path(folder)


def _syncfs(path: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, AttributeError):
        return False
    try:
        return int(libc.syncfs(fd)) == 0
    except AttributeError:
        return False
    finally:
        os.close(fd)


def write_app_files(folder: Path) -> dict[str, FileEntry]:
    """Publish-time writer: ``json/<system>/<code>.json`` per record, then ``json/index.json``."""

    root = folder / JSON_DIR
    root.mkdir(exist_ok=True)
    entries: list[dict[str, object]] = []
    written: list[Path] = []
    made: set[str] = set()
    with (folder / "procedures.jsonl").open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if not line.strip():
                continue
            rec = json.loads(line)
            system, code = rec["code_system"], rec["code"]
            if system not in made:
                (root / system).mkdir(exist_ok=True)
                made.add(system)
            rel = f"{system}/{code}.json"
            (root / rel).write_bytes(line)
            written.append(root / rel)
            entry = AppIndexEntry(
                code=code,
                system=system,
                title=rec.get("title"),
                path=rel,
                sha256=hashlib.sha256(line).hexdigest(),
                bytes=len(line),
            )
            entries.append(entry.model_dump())
    index = root / INDEX_NAME
    index.write_text(json.dumps(entries, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    _sync_tree(root, written)
    return {f"{JSON_DIR}/{INDEX_NAME}": file_entry(index, len(entries))}


