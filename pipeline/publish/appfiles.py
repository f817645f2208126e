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
import errno
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.publish.extras import file_entry, fsync_path
from schemas import FileEntry

#: a JSON string literal, as ``json.dumps(..., ensure_ascii=False)`` writes it
_json = json.JSONEncoder(ensure_ascii=False).encode

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


def _sync_tree(root: Path, systems: set[str]) -> None:
    """Make the written files durable before the version is renamed into place.

    One ``syncfs`` of the folder's file system where Linux offers it (an fsync per file costs ~3 ms
    each on a disk: 30 s for 10,000 records), else an fsync of every file in the ``systems``
    folders (all written by this run: the folder is new); then the folders and ``root``.
    """
    if not _syncfs(root):
        for system in sorted(systems):
            with os.scandir(root / system) as entries:
                for entry in entries:
                    fd = os.open(entry.path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
    for system in sorted(systems):
        fsync_path(root / system)
    fsync_path(root)


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


#: A record's app-file digest: (system, code, title, path relative to ``json/``, sha256 of the line,
#: its size, the staging folder it was written into or None, whether the file is written there).
AppDigest = tuple[str, str, "str | None", str, str, int, "str | None", bool]

_made_dirs: set[str] = set()  # staging folders' system folders this worker process has made


def prepare(line: bytes, rec: dict[str, Any], stage: Path | None) -> AppDigest:
    """The record's digest, made in a worker; with ``stage``, its file is written there too
    (``<stage>/<system>/<code>.json``), unless a file of that name is there already (another page of
    the same code, or an earlier try of this batch): publish then writes the file itself."""
    system, code = rec["code_system"], rec["code"]
    rel = f"{system}/{code}.json"
    written = False
    if stage is not None:
        folder = f"{stage}/{system}"
        if folder not in _made_dirs:
            os.makedirs(folder, exist_ok=True)
            _made_dirs.add(folder)
        try:  # open(name, "xb") without the file object around it (not inherited either: PEP 446)
            fd = os.open(f"{stage}/{rel}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            pass
        else:
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            written = True
    sha = hashlib.sha256(line).hexdigest()
    return system, code, rec.get("title"), rel, sha, len(line), None if stage is None else str(stage), written


class AppFilesSink:
    """Publish-time writer fed by the record stream (``record_id`` order): each record's line goes to
    ``json/<system>/<code>.json`` and its index entry straight to ``json/index.json``, so neither
    the records nor the index are held in memory or read back from ``procedures.jsonl``.

    A record prepared in a worker (``prepare``) had its file written into a staging folder; when
    pass 2 begins (every batch is in, no worker writes any more) the staging folders move into
    ``json/`` (one rename per code system when nothing is there yet). A file is written (again) in
    pass 2 when its worker could not write it, or when its code had more than one winning page in
    pass 1: the file there may be another page's. Records digested here (``digest``: reused from the
    previous version, or results that did not come prepared) have their file written at once.

    ``index.json`` is written as ``json.dumps(entries, ensure_ascii=False, indent=1)`` would write
    the whole list (the format readers have always had), one entry at a time.
    """

    def __init__(self, folder: Path) -> None:
        self.root = folder / JSON_DIR
        self.root.mkdir(exist_ok=True)
        self.count = 0
        self._made: set[str] = set()
        self._stages: set[str] = set()
        self._seen: set[str] = set()
        self._again: set[str] = set()  # codes with more than one winning page in pass 1
        self._merged = False
        self._index: IO[str] = (self.root / INDEX_NAME).open("w", encoding="utf-8")

    def _note(self, rel: str) -> None:
        if rel in self._seen:
            self._again.add(rel)
        else:
            self._seen.add(rel)

    def _write(self, system: str, rel: str, line: bytes) -> None:
        if system not in self._made:
            (self.root / system).mkdir(exist_ok=True)
            self._made.add(system)
        with open(self.root / rel, "wb") as fh:
            fh.write(line)

    def digest(self, line: bytes, rec: dict[str, Any]) -> AppDigest:
        """Write the record's own file now (publish calls this while the workers still parse; a
        later winner for the same code overwrites it); the index entry waits for ``add``."""
        system, code, title, rel, sha, size, _, _ = prepare(line, rec, None)
        self._note(rel)
        self._write(system, rel, line)
        return system, code, title, rel, sha, size, None, True

    def take(self, digest: AppDigest) -> AppDigest:
        """A digest made in a worker (``prepare``): its staging folder is moved in at pass 2."""
        self._note(digest[3])
        if digest[6] is not None:
            self._stages.add(digest[6])
        return digest

    def _merge_stages(self) -> None:
        """Move the staging folders' files into ``json/`` (once, when pass 1 is over)."""
        self._merged = True
        for stage in sorted(self._stages):
            if not os.path.isdir(stage):
                continue
            with os.scandir(stage) as systems:
                for entry in sorted(systems, key=lambda e: e.name):
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    dst = self.root / entry.name
                    if entry.name not in self._made and not dst.exists():
                        _move(entry.path, dst)
                    else:
                        with os.scandir(entry.path) as files:
                            for f in files:
                                _move(f.path, dst / f.name)
                        os.rmdir(entry.path)
                    self._made.add(entry.name)

    def add(self, line: bytes, digest: AppDigest) -> None:
        """The record's entry in ``json/index.json`` (in ``record_id`` order); its file, when the one
        in place may not be this line."""
        if not self._merged:
            self._merge_stages()
        system, code, title, rel, sha, size, _, written = digest
        if not written or rel in self._again:
            self._write(system, rel, line)
        self._index.write(
            ("[\n {" if not self.count else ",\n {")
            + f'\n  "code": {_json(code)},\n  "system": {_json(system)},'
            + f'\n  "title": {"null" if title is None else _json(title)},\n  "path": {_json(rel)},'
            + f'\n  "sha256": "{sha}",\n  "bytes": {size}\n }}'
        )
        self.count += 1

    def close(self) -> dict[str, FileEntry]:
        if not self._merged:
            self._merge_stages()
        self._index.write("\n]\n" if self.count else "[]\n")
        self._index.close()
        index = self.root / INDEX_NAME
        _sync_tree(self.root, self._made)
        return {f"{JSON_DIR}/{INDEX_NAME}": file_entry(index, self.count)}

    def abort(self) -> None:
        self._index.close()


def _move(src: str, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (replacing a file there); a copy across file systems."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        if dst.is_file():
            dst.unlink()
        shutil.move(src, dst)


def write_app_files(folder: Path) -> dict[str, FileEntry]:
    """``json/<system>/<code>.json`` per record of the folder's ``procedures.jsonl``, then
    ``json/index.json`` (publish feeds ``AppFilesSink`` directly instead)."""
    sink = AppFilesSink(folder)
    try:
        with (folder / "procedures.jsonl").open("rb") as fh:
            for line in fh:
                line = line.rstrip(b"\n")
                if line.strip():
                    sink.add(line, sink.digest(line, json.loads(line)))
    except BaseException:
        sink.abort()
        raise
    return sink.close()
