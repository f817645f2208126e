"""Publish: results -> a new, complete version folder, then ``latest`` switched to it in one step.

Layout of ``out_dir``::

    versions/<run_id>/      one folder per run, never changed once renamed into place
    versions/.tmp-<run_id>/ a run being written (removed on failure; left behind only by a hard kill)
    latest -> versions/<run_id>   symlink, switched with one os.replace()
    LATEST                  the same run id as text (for platforms without symlinks)

Every file is fsynced before the folder is renamed into place, and the folder before ``latest``
moves, so a crash at any moment leaves the previous version (and what ``latest`` points at) intact.

Every record is validated against ``schemas.ProcedureRecord`` once before it is published (an invalid
one becomes a reject, stage ``validate``): in the worker that parsed it, which sends it prepared
(``prepare.py``: its line, dedupe key and the sinks' digests, its app file staged), or here for the
results that come as record dicts (Dask, callers of ``publish``) and the lines reused from the
previous version. The first pass picks a winner per ``record_id`` and spills each winner's line with
its digests to a temporary file while the workers still parse; the second writes the winners in
``record_id`` order in chunks of at most ``RECORDS_PER_CHUNK`` records or ``CHUNK_BYTES`` of JSON
(one Parquet row group each), the chunks' tables built by two worker processes (``_ChunkBuilder``),
and feeds the sinks (search index, app files) and the section coverage count, so memory holds the
dedupe index and the rejects, not every record, and nothing reads the written files back.

Around the tables (issue 4): ``publish`` holds the out-dir lock (``lock.py``) and first removes
what dead runs left behind (``versions.clean_leftovers``). Given an incremental ``plan``
(``pipeline.incremental``) it also writes the input ledger ``inputs.jsonl`` and takes the reused
results from the previous version; when nothing changed it hard-links the previous version's tables
instead of writing them. Against the previous version it writes the change report
(``changes.parquet``, ``changes.md``; ``changes.py``) and judges the quality gates (``gates.py``):
a failed gate publishes nothing unless ``force``. After ``latest`` moves, versions beyond ``keep``
are pruned (``versions.prune``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pickle
import re
import secrets
import shutil
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipeline.publish import changes as change_report
from pipeline.publish import extras, tables
from pipeline.publish import gates as quality_gates
from pipeline.publish.dedupe import Candidate, Folder
from pipeline.publish.extras import file_entry, fsync_path
from pipeline.publish.lock import out_dir_lock
from pipeline.publish.prepare import first_error, invalid_record
from pipeline.publish.versions import DEFAULT_KEEP, TMP_PREFIX, clean_leftovers, prune
from pipeline.version import parser_version
from schemas.models import Counts, FileEntry, Manifest, ProcedureRecord, Reject

if TYPE_CHECKING:
    from pipeline.incremental import Plan

#: A chunk (one Parquet row group per table) ends at this many records or this much record JSON.
RECORDS_PER_CHUNK = 1000
CHUNK_BYTES = 4 * 1024 * 1024
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"
VERSIONS = "versions"
MANIFEST = "manifest.json"
LEDGER = "inputs.jsonl"
#: the tables every version has; a version of unchanged inputs links these from the previous one
CORE_FILES = (
    "procedures.parquet",
    "procedures.jsonl",
    "sections.parquet",
    "items.parquet",
    "similar_codes.parquet",
    "rejects.jsonl",
    "rejects.parquet",
    "duplicates.jsonl",
    "duplicates.parquet",
)

#: files that belong to one run and are written anew even when the tables are linked
PER_RUN = frozenset({MANIFEST, change_report.PARQUET, change_report.MARKDOWN, "datapackage.json"})

log = logging.getLogger("procpipe.publish")


def new_run_id(now: datetime | None = None) -> str:
    """``20261125T170000Z-1a2b3c``: sortable by time, unique by its random tail."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class _ParquetFile:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema, self.rows = path, schema, 0
        self._writer = pq.ParquetWriter(str(path), schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.write_table(tables.to_table(rows, self.schema))

    def write_table(self, table: pa.Table) -> None:
        """One row group (nothing for an empty table)."""
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> FileEntry:
        self._writer.close()
        return file_entry(self.path, self.rows)


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
        return file_entry(self.path, self.rows)


def _reject_of(raw: Any) -> Reject:
    try:
        return Reject.model_validate(raw)
    except ValidationError as exc:
        source = raw.get("source") if isinstance(raw, dict) else None
        return Reject(
            source=str(source or "unknown"),
            stage="publish",
            reason=f"malformed reject result ({first_error(exc)})",
            detail=repr(raw)[:300],
        )


def _write_version(
    results: Iterable[dict[str, Any]],
    folder_path: Path,
    *,
    inputs: int,
    plan: Plan | None = None,
    executor: Executor | None = None,
) -> tuple[Counts, dict[str, FileEntry], dict[str, int]]:
    """Write the core tables (and, given a plan, the input ledger) into ``folder_path``, feeding every
    record to the extras' sinks on the way (search index, app files).

    Returns the counts, the files written and, per section key, how many records have that key
    (``having``: what section coverage is computed from, counted here so nothing reads the
    sections table back).

    Pass 1 validates each result once (``ProcedureRecord``) and spills its JSON line when it wins its
    record_id so far (a page that loses never wins later, so its record is not kept); pass 2 reads
    the winners back in ``record_id`` order as plain JSON data (already validated: no model is
    built again) and writes every table and sink from it.
    """
    folder = Folder()
    rejects: list[Reject] = []
    seen = 0
    files: dict[str, FileEntry] = {}
    having: Counter[str] = Counter()
    spill_path = folder_path / ".records.spill"
    sinks: list[extras.Sink] = []
    try:
        for make in extras.SINKS:
            sinks.append(make(folder_path))
        with spill_path.open("w+b") as spill:
            # pass 1: validate, pick a winner per record_id, and spill each winner's line with the
            # sinks' digests of it (made while the workers still parse, not in the serial tail)
            for result in results:
                seen += 1
                line: bytes | None = None
                record: ProcedureRecord | None = None
                prepared = result.get("prepared") if isinstance(result, dict) and len(result) == 1 else None
                if prepared is not None:
                    # validated, dumped and digested in the worker (``prepare.py``)
                    line, rid, path, fetched, url, sha, made = prepared
                    cand = Candidate(rid, path, fetched, url, sha)
                else:
                    if isinstance(result, dict) and set(result) == {"record_line"}:
                        # a record reused from the previous version: its JSON line as published there
                        line = bytes(result["record_line"])
                        try:
                            record = ProcedureRecord.model_validate_json(line)
                        except ValidationError as exc:
                            rejects.append(invalid_record(json.loads(line), exc))
                            continue
                    else:
                        if not isinstance(result, dict) or ("record" in result) == ("reject" in result):
                            raise ValueError(
                                f"result {seen} is neither {{'record': ...}} nor {{'reject': ...}}"
                            )
                        if "reject" in result:
                            rejects.append(_reject_of(result["reject"]))
                            continue
                        try:
                            record = ProcedureRecord.model_validate(result["record"])
                        except ValidationError as exc:
                            rejects.append(invalid_record(result["record"], exc))
                            continue
                    src = record.source
                    cand = Candidate(record.record_id, src.path or "", src.fetched_at, src.url, src.sha256)
                if folder.beats(cand):
                    # only a (current) winner is spilled: its line and the sinks' digests of it, made
                    # now while the workers still parse (or taken from the worker that made them)
                    if record is None:
                        digests = [sink.take(d) for sink, d in zip(sinks, made, strict=True)]
                    else:
                        line = line or record.model_dump_json().encode("utf-8")
                        data = json.loads(line)
                        digests = [sink.digest(line, data) for sink in sinks]
                    assert line is not None
                    blob = pickle.dumps((line, digests), protocol=pickle.HIGHEST_PROTOCOL)
                    cand = replace(cand, ref=(spill.tell(), len(blob), len(line)))
                    spill.write(blob)
                folder.add(cand)
            if seen != inputs:
                raise ValueError(
                    f"{seen} results for {inputs} inputs: one record or reject per input expected"
                )
            counts = Counts(
                inputs=inputs, records=len(folder.winners), rejects=len(rejects), duplicates=folder.duplicates
            )

            # pass 2: records in record_id order, one row group per chunk; every sink sees each record
            procedures = _ParquetFile(folder_path / "procedures.parquet", tables.PROCEDURES_SCHEMA)
            sections = _ParquetFile(folder_path / "sections.parquet", tables.SECTIONS_SCHEMA)
            items = _ParquetFile(folder_path / "items.parquet", tables.ITEMS_SCHEMA)
            similar = _ParquetFile(folder_path / "similar_codes.parquet", tables.SIMILAR_CODES_SCHEMA)
            jsonl = _JsonlFile(folder_path / "procedures.jsonl")
            ids = sorted(folder.winners)
            parquet = (procedures, sections, items, similar)
            with _ChunkBuilder(len(ids), executor) as builder:
                for lines in _chunks(ids, folder, spill, jsonl, sinks):
                    for done in builder.submit(lines):
                        _write_chunk(done, parquet, having)
                for done in builder.drain():
                    _write_chunk(done, parquet, having)
            for name, w in (
                ("procedures.parquet", procedures),
                ("procedures.jsonl", jsonl),
                ("sections.parquet", sections),
                ("items.parquet", items),
                ("similar_codes.parquet", similar),
            ):
                files[name] = w.close()
            while sinks:
                files.update(sinks.pop(0).close())
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    spill_path.unlink()

    rejects.sort(key=lambda r: (r.source, r.stage, r.reason))
    reject_rows = [r.model_dump() for r in rejects]
    files.update(_write_pair(folder_path, "rejects", reject_rows, tables.REJECTS_SCHEMA))
    files.update(_write_pair(folder_path, "duplicates", folder.duplicate_rows(), tables.DUPLICATES_SCHEMA))
    if plan is not None:
        files[LEDGER] = _write_ledger(folder_path / LEDGER, plan, folder, ids, rejects)
    return counts, files, dict(having)


def _chunks(
    ids: list[str], folder: Folder, spill: IO[bytes], jsonl: _JsonlFile, sinks: list[extras.Sink]
) -> Iterator[list[bytes]]:
    """The winners' lines in ``record_id`` order, in chunks of at most ``RECORDS_PER_CHUNK`` records or
    ``CHUNK_BYTES`` of JSON; each line is written to ``procedures.jsonl`` and given to every sink
    (with its digest) as its chunk is read."""
    start = 0
    while start < len(ids):
        lines: list[bytes] = []
        size = 0
        while start < len(ids) and len(lines) < RECORDS_PER_CHUNK and size < CHUNK_BYTES:
            offset, length, line_length = folder.winners[ids[start]].ref
            start += 1
            spill.seek(offset)
            line, digests = pickle.loads(spill.read(length))
            size += line_length
            jsonl.write(line)
            for sink, digest in zip(sinks, digests, strict=True):
                sink.add(line, digest)
            lines.append(line)
        yield lines


Chunk = tables.Chunk


def _write_chunk(chunk: Chunk, parquet: tuple[_ParquetFile, ...], having: Counter[str]) -> None:
    *parts, keys = chunk
    for writer, table in zip(parquet, parts, strict=True):
        writer.write_table(table)
    having.update(keys)


class _ChunkBuilder:
    """Builds the chunks' tables (``tables.chunk_tables``) in order: in worker processes when there
    are enough records for it to pay (Arrow builds them for ~0.04 ms a record, but this is the
    serial tail of publishing, after every page is parsed, while the parent writes), else here.

    A chunk goes to the workers in pieces of at most ``PIECE`` records (both workers build one
    chunk at once, and each holds little); its pieces' tables are joined into the chunk's one row
    group. ``submit`` returns the chunks finished by then, in order; ``drain`` the rest. A pool
    that breaks (a worker died) is dropped and the pieces it had are built here."""

    IN_FLIGHT = 2  # chunks
    PIECE = 250

    def __init__(self, records: int, executor: Executor | None = None) -> None:
        workers = min(2, os.cpu_count() or 1)
        self._pool: Executor | None = None
        self._own = False
        if workers > 1 and records >= POOL_MIN_RECORDS:
            if executor is not None:
                self._pool = executor  # the caller's (e.g. the flow's parsing pool, idle by now)
            else:
                from pipeline.process import pool_context

                self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=pool_context())
                self._own = True
        self._pending: deque[list[tuple[list[bytes], Future[Chunk] | None]]] = deque()

    def __enter__(self) -> _ChunkBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None and self._own:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for pieces in self._pending:  # left by an error: not built, not waited for
            for _, future in pieces:
                if future is not None:
                    future.cancel()

    def submit(self, lines: list[bytes]) -> list[Chunk]:
        if self._pool is None:
            return [tables.chunk_tables(lines)]
        pieces: list[tuple[list[bytes], Future[Chunk] | None]] = []
        for i in range(0, len(lines), self.PIECE):
            piece = lines[i : i + self.PIECE]
            try:
                future: Future[Chunk] | None = self._pool.submit(tables.chunk_tables, piece)
            except (BrokenProcessPool, RuntimeError):  # broken, or shut down by its owner
                future = None
            pieces.append((piece, future))
        self._pending.append(pieces)
        done: list[Chunk] = []
        while len(self._pending) > self.IN_FLIGHT:
            done.append(self._next())
        return done

    def drain(self) -> list[Chunk]:
        return [self._next() for _ in range(len(self._pending))]

    def _next(self) -> Chunk:
        built = [self._built(piece, future) for piece, future in self._pending.popleft()]
        parts = [pa.concat_tables([b[i] for b in built]) for i in range(4)]
        keys = [k for b in built for k in b[4]]
        return parts[0], parts[1], parts[2], parts[3], keys

    @staticmethod
    def _built(piece: list[bytes], future: Future[Chunk] | None) -> Chunk:
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                log.warning("a publishing worker died: building the rest of the tables here")
        return tables.chunk_tables(piece)


#: Below this many records the tables are built in the publishing process (a worker's start-up,
#: pyarrow's import, costs more than it saves).
POOL_MIN_RECORDS = 3 * RECORDS_PER_CHUNK


def _write_ledger(path: Path, plan: Plan, folder: Folder, ids: list[str], rejects: list[Reject]) -> FileEntry:
    """``inputs.jsonl``: what each input of the plan became, and where its result is."""
    from pipeline.incremental import is_transient, ledger_row

    line_of = {rid: i for i, rid in enumerate(ids)}
    winners = {c.path: c for c in folder.winners.values()}
    losers = {c.path: c for c, _ in folder.folded}
    reject_at: dict[str, tuple[int, Reject]] = {}
    for i, r in enumerate(rejects):
        reject_at.setdefault(r.source, (i, r))
    out = _JsonlFile(path)
    for rel in plan.paths:
        key = plan.keys.get(rel)
        if rel in winners or rel in losers:
            c = winners.get(rel) or losers[rel]
            same = key is not None and c.sha256 == key.sha256
            if rel in winners:
                row = ledger_row(
                    rel, key, "record", record_id=c.record_id, line=line_of[c.record_id], reusable=same
                )
            else:
                row = ledger_row(rel, key, "duplicate", record_id=c.record_id, reusable=same)
        elif rel in reject_at:
            i, r = reject_at[rel]
            row = ledger_row(rel, key, "reject", line=i, reusable=not is_transient(r.reason))
        else:
            row = ledger_row(rel, key, "unknown", reusable=False)
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return out.close()


def _link(src: str, dst: str) -> None:
    """Hard-link a file of an immutable version into a new one (a copy where links are impossible)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        file_entry(Path(dst), None)  # fsync


def _link_version(
    results: Iterable[dict[str, Any]], folder_path: Path, *, inputs: int, plan: Plan
) -> tuple[Counts, dict[str, FileEntry]]:
    """Nothing changed: the previous version's files, linked, stand for this one's.

    Every file of the previous version is linked (tables, ledger, and the derived files such as the
    search index and app files, which depend on the tables only) except those that belong to one
    run (``PER_RUN``: manifest, change report, data package), which are written again.
    """
    if any(True for _ in results):
        raise ValueError("an unchanged plan takes no parsed results")
    previous, manifest = plan.previous, plan.previous_manifest
    assert previous is not None and manifest is not None
    if manifest.counts.inputs != inputs:
        raise ValueError(f"{inputs} inputs, but the unchanged previous version had {manifest.counts.inputs}")
    files: dict[str, FileEntry] = {}
    src_base, dst_base = str(previous), str(folder_path)
    for root, dirs, names in os.walk(src_base):
        dirs.sort()
        rel_root = os.path.relpath(root, src_base)
        rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/") + "/"
        if rel_root:
            os.mkdir(os.path.join(dst_base, rel_root))
        for name in sorted(names):
            rel = rel_root + name
            if rel in PER_RUN:
                continue
            _link(os.path.join(root, name), os.path.join(dst_base, rel))
            if rel in manifest.files:
                files[rel] = manifest.files[rel]
    missing = [n for n in (*CORE_FILES, LEDGER) if n not in files]
    if missing:
        raise ValueError(f"previous version {previous.name} lacks {', '.join(missing)}")
    return manifest.counts, files


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
        fsync_path(out_dir)
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


def _previous_coverage(previous: Path | None, manifest: Manifest | None) -> dict[str, float] | None:
    if previous is None or manifest is None:
        return None
    if manifest.quality and isinstance(manifest.quality.get("coverage"), dict):
        return {str(k): float(v) for k, v in manifest.quality["coverage"].items()}
    from pipeline.load import section_coverage

    try:
        return section_coverage(previous)
    except Exception:  # noqa: BLE001 - an older or damaged version: the coverage gate is skipped
        return None


def _current(out_dir: Path) -> tuple[Path | None, Manifest | None]:
    previous = latest_version(out_dir)
    if previous is None:
        return None, None
    try:
        return previous, read_manifest(previous)
    except Exception:  # noqa: BLE001 - nothing usable to compare against
        log.warning("latest version %s has no readable manifest: not compared", previous.name)
        return None, None


def publish(
    results: Iterable[dict[str, Any]],
    out_dir: Path,
    *,
    inputs: int,
    run_id: str | None = None,
    keep: int | None = None,
    wait: float = 0.0,
    gates: quality_gates.GateConfig | str | Path | None = None,
    force: bool = False,
    plan: Plan | None = None,
    executor: Executor | None = None,
) -> Manifest:
    """Write ``results`` (``{"record": ...}`` / ``{"reject": ...}`` dicts) as a new version, make it latest.

    ``inputs`` is the number of input pages; there must be exactly one result per input (with a
    ``plan``, ``results`` are those of ``plan.to_parse``; the reused ones are added here). Raises
    (leaving the previous version current and untouched) when the results do not add up, the run id
    is taken or malformed, writing fails, or a quality gate fails (``GateFailed``; ``force`` publishes
    anyway and records it). ``gates``: a ``GateConfig``, a gates file, or None for the defaults.
    ``keep``: versions kept after publishing (default 10; ``latest`` always stays). ``wait``: seconds
    to wait for another run's lock on ``out_dir`` (``LockHeld`` after that). ``executor``: worker
    processes to build the tables' chunks in (default: two started for it when there are enough
    records); it must import ``pipeline.publish.tables`` by name (a process pool).
    """
    out_dir = Path(out_dir)
    created = datetime.now(UTC)
    run_id = run_id or new_run_id(created)
    if not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"bad run id {run_id!r}: letters, digits, '.', '_' and '-' only")
    config = gates if isinstance(gates, quality_gates.GateConfig) else quality_gates.load_config(gates)
    keep = DEFAULT_KEEP if keep is None else keep
    if keep < 1:
        raise ValueError("keep must be at least 1")
    with out_dir_lock(out_dir, run_id=run_id, wait=wait):
        versions = out_dir / VERSIONS
        versions.mkdir(parents=True, exist_ok=True)
        final = versions / run_id
        if final.exists():
            raise FileExistsError(f"version {run_id} already exists in {versions}")
        tmp = versions / f"{TMP_PREFIX}{run_id}"
        for left in clean_leftovers(out_dir):
            log.info("removed %s, left by a run that did not finish", left)
        previous, previous_manifest = _current(out_dir)
        tmp.mkdir()
        try:
            manifest = _assemble(
                results, tmp, inputs=inputs, run_id=run_id, created=created, plan=plan, config=config,
                force=force, previous=previous, previous_manifest=previous_manifest, executor=executor,
            )  # fmt: skip
            fsync_path(tmp)
            os.rename(tmp, final)
            fsync_path(versions)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        switch_latest(out_dir, run_id)
        try:
            removed = prune(out_dir, keep)
        except OSError as exc:  # the new version is published; pruning is retried next run
            log.warning("could not prune old versions: %s", exc)
        else:
            if removed:
                log.info("pruned %d old version(s): %s", len(removed), ", ".join(removed))
    return manifest


def _assemble(
    results: Iterable[dict[str, Any]],
    tmp: Path,
    *,
    inputs: int,
    run_id: str,
    created: datetime,
    plan: Plan | None,
    config: quality_gates.GateConfig,
    force: bool,
    previous: Path | None,
    previous_manifest: Manifest | None,
    executor: Executor | None = None,
) -> Manifest:
    """Everything of a version inside its temporary folder: tables, extras, changes, gates, manifest."""
    linked = plan is not None and plan.unchanged
    if linked:
        assert plan is not None
        counts, files = _link_version(results, tmp, inputs=inputs, plan=plan)
        reused: int | None = inputs
        having: dict[str, int] | None = None
    else:
        if plan is not None:
            results = itertools.chain(results, plan.reused_results())
        counts, files, having = _write_version(results, tmp, inputs=inputs, plan=plan, executor=executor)
        reused = len(plan.reuse) if plan is not None else None
    # the change report: against the previous version, or (the first version) everything added
    before = previous_manifest.files.get("procedures.jsonl") if previous_manifest else None
    same = before is not None and files["procedures.jsonl"].sha256 == before.sha256
    report, written = change_report.write_report(
        previous if previous_manifest else None,
        tmp,
        previous_run_id=previous_manifest.run_id if previous_manifest else None,
        run_id=run_id,
        same_records=counts.records if same else None,
    )
    for name, rows in written.items():
        files[name] = file_entry(tmp / name, rows)
    change_counts = report.counts.as_dict()
    if linked:
        # the derived files were linked with the tables; only the per-run data package is new
        files.update(extras.LAST(tmp))
    else:
        files.update(extras.write_extras(tmp))

    if linked and plan is not None and plan.previous_manifest and plan.previous_manifest.quality:
        quality = dict(plan.previous_manifest.quality)  # the same tables: the same numbers
    else:
        quality = quality_gates.measure(tmp, counts.inputs, counts.records, counts.rejects, having=having)
    results_ = quality_gates.evaluate(
        config, quality, previous_manifest, _previous_coverage(previous, previous_manifest)
    )
    failed = quality_gates.failed(results_)
    if failed and not force:
        raise quality_gates.GateFailed(results_, previous_manifest.run_id if previous_manifest else None)

    manifest = Manifest(
        parser_version=parser_version(),
        run_id=run_id,
        created_at=created,
        counts=counts,
        files=dict(sorted(files.items())),
        previous_run_id=previous_manifest.run_id if previous_manifest else None,
        reuse_key=plan.reuse_key if plan is not None else None,
        reused=reused,
        changes=change_counts,
        quality=quality,
        gates=results_,
        forced=bool(failed),
    )
    path = tmp / MANIFEST
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    file_entry(path, None)  # fsync
    return manifest
