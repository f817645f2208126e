"""The versions of an output folder: list them, keep the last N, clean up after dead runs, verify one.

- ``list_versions(out_dir)``: every complete version (a folder under ``versions/`` with a readable
  manifest), oldest first, with its counts, changes and whether it is ``latest``.
- ``prune(out_dir, keep)``: removes all but the ``keep`` newest versions, never the one ``latest``
  points at. A version is first renamed to ``versions/.del-<run_id>`` (one atomic step: it stops
  being a version) and then deleted, so a kill half-way leaves hidden debris, not a broken version.
- ``clean_leftovers(out_dir)``: removes what dead runs left (``versions/.tmp-*``, ``.del-*``,
  ``.latest.*.tmp``); call it only while holding the out-dir lock (``pipeline.publish.lock``), when
  no other run can be writing.
- ``verify(version_dir)``: re-reads every file against the manifest (size, sha256, rows) and
  returns the differences, one line each naming the file; an empty list means the version is intact.

Versions are immutable: a version published from unchanged inputs shares its files with the
previous one through hard links, so pruning one never touches another's data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from schemas import Manifest

VERSIONS = "versions"
MANIFEST = "manifest.json"
INDEX = "index.json"
DEFAULT_KEEP = 10
TMP_PREFIX = ".tmp-"
DEL_PREFIX = ".del-"


@dataclass(frozen=True)
class VersionInfo:
    """One published version as ``procpipe versions`` shows it."""

    run_id: str
    path: Path
    manifest: Manifest
    latest: bool


def _latest_id(out_dir: Path) -> str | None:
    from pipeline.publish.writer import latest_version

    found = latest_version(out_dir)
    return found.name if found is not None else None


def list_versions(out_dir: Path) -> list[VersionInfo]:
    """Complete versions of ``out_dir``, oldest first."""
    root = Path(out_dir) / VERSIONS
    if not root.is_dir():
        return []
    latest = _latest_id(Path(out_dir))
    found = []
    for path in _by_age(root):
        try:
            manifest = Manifest.model_validate_json((path / MANIFEST).read_bytes())
        except (OSError, ValidationError):
            continue
        found.append(VersionInfo(path.name, path, manifest, path.name == latest))
    return found


def _created(path: Path) -> datetime:
    try:
        return Manifest.model_validate_json((path / MANIFEST).read_bytes()).created_at
    except (OSError, ValidationError):
        return datetime.min.replace(tzinfo=UTC)  # no readable manifest: counted as the oldest


def _by_age(root: Path) -> list[Path]:
    """Version folders oldest first: by creation time (two runs may share a second), then run id."""
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(folders, key=lambda p: (_created(p), p.name))


def prune(out_dir: Path, keep: int = DEFAULT_KEEP) -> list[str]:
    """Delete all but the ``keep`` newest versions (``latest`` always stays); returns the removed ids."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    out_dir = Path(out_dir)
    root = out_dir / VERSIONS
    if not root.is_dir():
        return []
    latest = _latest_id(out_dir)
    names = [p.name for p in _by_age(root)]
    doomed = [n for n in names[: max(0, len(names) - keep)] if n != latest]
    for name in doomed:
        trash = root / f"{DEL_PREFIX}{name}"
        os.rename(root / name, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed


def clean_leftovers(out_dir: Path, *, keep_tmp: str | None = None) -> list[str]:
    """Remove debris of dead runs (hidden temporary folders and links); returns what was removed."""
    out_dir = Path(out_dir)
    removed: list[str] = []
    root = out_dir / VERSIONS
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((TMP_PREFIX, DEL_PREFIX)) and p.name != keep_tmp:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(f"{VERSIONS}/{p.name}")
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            if p.name.startswith((".latest.", ".LATEST.")) and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
                removed.append(p.name)
    return removed


def _rows(path: Path) -> int | None:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if path.suffix == ".jsonl":
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_index(version_dir: Path, name: str, problems: list[str]) -> set[str]:
    """Files listed by a nested ``index.json`` (a JSON list of ``{"path", "sha256", "bytes"}``, paths
    relative to its folder, e.g. the app files' ``json/index.json``): checked like manifest entries."""
    base = (version_dir / name).parent
    try:
        entries = json.loads((version_dir / name).read_bytes())
    except ValueError as exc:
        problems.append(f"{name}: not valid JSON ({exc})")
        return set()
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and "path" in e and "sha256" in e for e in entries
    ):
        return set()
    covered: set[str] = set()
    for e in entries:
        path = base / str(e["path"])
        rel = path.relative_to(version_dir).as_posix()
        covered.add(rel)
        if not path.is_file():
            problems.append(f"{rel}: missing (listed in {name})")
        elif "bytes" in e and path.stat().st_size != e["bytes"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, {name} says {e['bytes']}")
        elif _sha256(path) != e["sha256"]:
            problems.append(f"{rel}: sha256 differs from {name}")
    return covered


def verify(version_dir: Path, *, files: list[str] | None = None) -> list[str]:
    """Differences between a version folder and its manifest, one line each naming the file.

    Checks every listed file (present, size, sha256, rows for .parquet and .jsonl), the files a
    listed ``index.json`` names in turn (the app files), that nothing unlisted lies beside them,
    and that the table row counts agree with the manifest's counts.
    ``files`` limits the check to those names (and skips the unlisted-file check).
    """
    version_dir = Path(version_dir)
    try:
        manifest = Manifest.model_validate_json((version_dir / MANIFEST).read_bytes())
    except OSError as exc:
        return [f"{MANIFEST}: cannot read ({exc.strerror or exc})"]
    except ValidationError as exc:
        return [f"{MANIFEST}: not a valid manifest ({exc.errors()[0].get('msg')})"]
    problems: list[str] = []
    names = list(manifest.files) if files is None else [n for n in files if n in manifest.files]
    for name in names:
        entry = manifest.files[name]
        path = version_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != entry.bytes:
            problems.append(f"{name}: {size} bytes, manifest says {entry.bytes}")
            continue
        digest = _sha256(path)
        if digest != entry.sha256:
            problems.append(f"{name}: sha256 {digest[:12]}..., manifest says {entry.sha256[:12]}...")
            continue
        if entry.rows is not None:
            try:
                rows = _rows(path)
            except Exception as exc:  # noqa: BLE001 - an unreadable file is a difference, not a crash
                problems.append(f"{name}: unreadable ({type(exc).__name__}: {exc})")
                continue
            if rows is not None and rows != entry.rows:
                problems.append(f"{name}: {rows} rows, manifest says {entry.rows}")
    nested: set[str] = set()
    for name in names:
        if Path(name).name == INDEX and name not in {p.split(":")[0] for p in problems}:
            nested |= _verify_index(version_dir, name, problems)
    if files is None:
        listed = set(manifest.files) | nested | {MANIFEST}
        for p in sorted(version_dir.rglob("*")):
            rel = p.relative_to(version_dir).as_posix()
            if p.is_file() and rel not in listed:
                problems.append(f"{rel}: not listed in the manifest")
    c = manifest.counts
    for name, expected in (
        ("procedures.parquet", c.records),
        ("procedures.jsonl", c.records),
        ("rejects.parquet", c.rejects),
        ("duplicates.parquet", c.duplicates),
    ):
        listed_rows = manifest.files[name].rows if name in manifest.files else None
        if listed_rows is not None and listed_rows != expected and name in names:
            problems.append(f"{name}: manifest lists {listed_rows} rows but counts say {expected}")
    return problems
