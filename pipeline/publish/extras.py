"""Derived files of a version, written after the core tables and before the manifest.

Each writer takes the version folder (holding procedures.jsonl, the Parquet tables, rejects and
duplicates) and returns ``{file name: FileEntry}`` for what it wrote, so the manifest lists and
hashes those files too. Writers run in the order of ``WRITERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from schemas import FileEntry

Writer = Callable[[Path], dict[str, FileEntry]]

WRITERS: list[Writer] = []


def write_extras(folder: Path) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    for writer in WRITERS:
        files.update(writer(folder))
    return files
