"""Publish: results -> a new, complete version folder, then ``latest`` switched to it in one step.

Layout of ``out_dir``::

    versions/<run_id>/      one folder per run, never changed once renamed into place
    versions/.tmp-<run_id>/ a run being written (removed on failure; left behind only by a hard kill)
    latest -> versions/<run_id>   symlink, switched with one os.replace()
    LATEST                  the same run id as text (for platforms without symlinks)

Every file is fsynced before the folder is renamed into place, and the folder before ``latest``
moves, so a crash at any moment leaves the previous version (and what ``latest`` points at) intact.

Records are validated again against ``schemas.ProcedureRecord`` on the way in (an invalid one becomes
a reject, stage ``validate``), spilled to a temporary file, and written out in ``record_id`` order in
chunks of at most ``RECORDS_PER_CHUNK`` records or ``CHUNK_BYTES`` of JSON (one Parquet row group
each), so memory holds the dedupe index and the rejects, not every record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipeline.publish import tables
from pipeline.publish.dedupe import Candidate, Folder
from pipeline.publish.extras import write_extras
from pipeline.version import parser_version
from schemas.models import Counts, FileEntry, Manifest, ProcedureRecord, Reject

#: A chunk (one Parquet row group per table) ends at this many records or this much record JSON.
RECORDS_PER_CHUNK = 1000
CHUNK_BYTES = 4 * 1024 * 1024
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"
VERSIONS = "versions"
MANIFEST = "manifest.json"


def new_run_id(now: datetime | None = None) -> str:
    """``20261125T170000Z-1a2b3c``: sortable by time, unique by its random tail."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _fsync_path(path: Path) -> None:
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


def _file_entry(path: Path, rows: int | None) -> FileEntry:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
        os.fsync(fh.fileno())
    return FileEntry(sha256=digest.hexdigest(), rows=rows, bytes=path.stat().st_size)


class _ParquetFile:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema, self.rows = path, schema, 0
        self._writer = pq.ParquetWriter(str(path), schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._writer.write_table(tables.to_table(rows, self.schema))
            self.rows += len(rows)

    def close(self) -> FileEntry:
        self._writer.close()
        return _file_entry(self.path, self.rows)


class _JsonlFile:
    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, 0
        self._fh: IO[bytes] = path.open("wb")

    def write(self, line: bytes) -> None:
        self._fh.write(line)
        self._fh.write(b"\n")
        self.rows += 1

    def close(self) -> FileEntry:
        self._fh.close()
        return _file_entry(self.path, self.rows)


def _reject_of(raw: Any) -> Reject:
    try:
        return Reject.model_validate(raw)
    except ValidationError as exc:
        source = raw.get("source") if isinstance(raw, dict) else None
        return Reject(
            source=str(source or "unknown"),
            stage="publish",
            reason=f"malformed reject result ({_first_error(exc)})",
            detail=repr(raw)[:300],
        )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "record"
    return f"{where}: {err.get('msg')}"


def _invalid_record(raw: Any, exc: ValidationError) -> Reject:
    src = raw.get("source") if isinstance(raw, dict) else None
    src = src if isinstance(src, dict) else {}
    name = src.get("path") or (raw.get("record_id") if isinstance(raw, dict) else None) or "unknown"
    return Reject(
        source=str(name),
        stage="validate",
        reason=f"invalid record ({_first_error(exc)})",
        url=src.get("url") if isinstance(src.get("url"), str) else None,
        sha256=src.get("sha256") if isinstance(src.get("sha256"), str) else None,
    )


def _write_version(
    results: Iterable[dict[str, Any]], folder_path: Path, *, inputs: int, run_id: str, created: datetime
) -> Manifest:
    folder = Folder()
    rejects: list[Reject] = []
    seen = 0
    files: dict[str, FileEntry] = {}
    spill_path = folder_path / ".records.spill"
    with spill_path.open("w+b") as spill:
        # pass 1: validate, spill records, pick a winner per record_id
        for result in results:
            seen += 1
            if not isinstance(result, dict) or ("record" in result) == ("reject" in result):
                raise ValueError(f"result {seen} is neither {{'record': ...}} nor {{'reject': ...}}")
            if "reject" in result:
                rejects.append(_reject_of(result["reject"]))
                continue
            try:
                record = ProcedureRecord.model_validate(result["record"])
            except ValidationError as exc:
                rejects.append(_invalid_record(result["record"], exc))
                continue
            line = record.model_dump_json().encode("utf-8")
            offset = spill.tell()
            spill.write(line)
            src = record.source
            ref = (offset, len(line))
            folder.add(Candidate(record.record_id, src.path or "", src.fetched_at, src.url, src.sha256, ref))
        if seen != inputs:
            raise ValueError(f"{seen} results for {inputs} inputs: one record or reject per input expected")
        counts = Counts(
            inputs=inputs, records=len(folder.winners), rejects=len(rejects), duplicates=folder.duplicates
        )

        # pass 2: records in record_id order, one row group per chunk
        procedures = _ParquetFile(folder_path / "procedures.parquet", tables.PROCEDURES_SCHEMA)
        sections = _ParquetFile(folder_path / "sections.parquet", tables.SECTIONS_SCHEMA)
        items = _ParquetFile(folder_path / "items.parquet", tables.ITEMS_SCHEMA)
        similar = _ParquetFile(folder_path / "similar_codes.parquet", tables.SIMILAR_CODES_SCHEMA)
        jsonl = _JsonlFile(folder_path / "procedures.jsonl")
        ids = sorted(folder.winners)
        start = 0
        while start < len(ids):
            rows: list[dict[str, Any]] = []
            s_rows: list[dict[str, Any]] = []
            i_rows: list[dict[str, Any]] = []
            c_rows: list[dict[str, Any]] = []
            size = 0
            while start < len(ids) and len(rows) < RECORDS_PER_CHUNK and size < CHUNK_BYTES:
                offset, length = folder.winners[ids[start]].ref
                start += 1
                spill.seek(offset)
                line = spill.read(length)
                size += length
                jsonl.write(line)
                record = ProcedureRecord.model_validate_json(line)
                rows.append(tables.procedure_row(record))
                s, i, c = tables.child_rows(record)
                s_rows += s
                i_rows += i
                c_rows += c
            procedures.write(rows)
            sections.write(s_rows)
            items.write(i_rows)
            similar.write(c_rows)
        for name, w in (
            ("procedures.parquet", procedures),
            ("procedures.jsonl", jsonl),
            ("sections.parquet", sections),
            ("items.parquet", items),
            ("similar_codes.parquet", similar),
        ):
            files[name] = w.close()
    spill_path.unlink()

    rejects.sort(key=lambda r: (r.source, r.stage, r.reason))
    reject_rows = [r.model_dump() for r in rejects]
    files.update(_write_pair(folder_path, "rejects", reject_rows, tables.REJECTS_SCHEMA))
    files.update(_write_pair(folder_path, "duplicates", folder.duplicate_rows(), tables.DUPLICATES_SCHEMA))
    files.update(write_extras(folder_path))

    manifest = Manifest(
        parser_version=parser_version(),
        run_id=run_id,
        created_at=created,
        counts=counts,
        files=dict(sorted(files.items())),
    )
    path = folder_path / MANIFEST
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    _file_entry(path, None)  # fsync
    return manifest


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _write_pair(
    folder_path: Path, name: str, rows: list[dict[str, Any]], schema: pa.Schema
) -> dict[str, FileEntry]:
    """``<name>.jsonl`` and ``<name>.parquet`` holding the same rows."""
    jsonl = _JsonlFile(folder_path / f"{name}.jsonl")
    for row in rows:
        jsonl.write(json.dumps(row, ensure_ascii=False, default=_json_default).encode("utf-8"))
    parquet = _ParquetFile(folder_path / f"{name}.parquet", schema)
    parquet.write(rows)
    return {f"{name}.jsonl": jsonl.close(), f"{name}.parquet": parquet.close()}


def switch_latest(out_dir: Path, run_id: str) -> None:
    """Point ``latest`` (symlink) and ``LATEST`` (text) at ``versions/<run_id>``, each in one os.replace.

    The symlink moves first; it is what ``latest_version`` and readers of ``out_dir/latest`` follow.
    Where symlinks cannot be made, ``LATEST`` alone tells.
    """
    out_dir = Path(out_dir)
    link = out_dir / LATEST_LINK
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} is not a symlink; move it away so that it can point at a version")
    tmp_link = out_dir / f".{LATEST_LINK}.{run_id}.tmp"
    tmp_file = out_dir / f".{LATEST_FILE}.{run_id}.tmp"
    try:
        _remove(tmp_link)
        try:
            os.symlink(Path(VERSIONS) / run_id, tmp_link, target_is_directory=True)
        except (OSError, NotImplementedError):
            pass
        else:
            os.replace(tmp_link, link)
        with tmp_file.open("w", encoding="utf-8") as fh:
            fh.write(run_id + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_file, out_dir / LATEST_FILE)
        _fsync_path(out_dir)
    finally:
        _remove(tmp_link)
        _remove(tmp_file)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()


def latest_version(out_dir: Path) -> Path | None:
    """The folder of the current version: where ``latest`` points, else what ``LATEST`` names."""
    out_dir = Path(out_dir)
    link = out_dir / LATEST_LINK
    if link.is_dir():
        return link.resolve()
    marker = out_dir / LATEST_FILE
    if marker.is_file():
        run_id = marker.read_text(encoding="utf-8").strip()
        if RUN_ID_PATTERN.match(run_id) and (out_dir / VERSIONS / run_id).is_dir():
            return out_dir / VERSIONS / run_id
    return None


def read_manifest(version_dir: Path) -> Manifest:
    """The validated manifest of a version folder."""
    return Manifest.model_validate_json((Path(version_dir) / MANIFEST).read_bytes())


def publish(
    results: Iterable[dict[str, Any]],
    out_dir: Path,
    *,
    inputs: int,
    run_id: str | None = None,
) -> Manifest:
    """Write ``results`` (``{"record": ...}`` / ``{"reject": ...}`` dicts) as a new version, make it latest.

    ``inputs`` is the number of input pages; there must be exactly one result per input. Raises
    (leaving the previous version current and untouched) when the results do not add up, the run id
    is taken or malformed, or writing fails.
    """
    out_dir = Path(out_dir)
    created = datetime.now(UTC)
    run_id = run_id or new_run_id(created)
    if not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"bad run id {run_id!r}: letters, digits, '.', '_' and '-' only")
    versions = out_dir / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    final = versions / run_id
    if final.exists():
        raise FileExistsError(f"version {run_id} already exists in {versions}")
    tmp = versions / f".tmp-{run_id}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        manifest = _write_version(results, tmp, inputs=inputs, run_id=run_id, created=created)
        _fsync_path(tmp)
        os.rename(tmp, final)
        _fsync_path(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    switch_latest(out_dir, run_id)
    return manifest
