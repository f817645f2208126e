"""Incremental runs: an input unchanged since the last version reuses its result instead of being parsed.

Every version written from a plan keeps an input ledger, ``inputs.jsonl``: one row per input with
its path, the sha256 of its bytes and of its sidecar (``meta_sha256``), what it became (``record``,
``duplicate`` folded into another page's record, or ``reject``), the ``record_id`` and the ``line``
of its result in ``procedures.jsonl`` / ``rejects.jsonl``, and whether the result may be reused.

``plan(raw_dir, out_dir)`` hashes every input and looks each up in the ledger of the current
version. An input is reused when its bytes and sidecar hash the same and the version's
``reuse_key`` equals this program's: a hash of the parser version (which holds the vocabulary's
hash), the schema version, the per-page limits and the source code of everything that turns bytes
into a result (so an edit to the parser or the vocabulary reprocesses everything, even one that
forgot to bump ``PARSER_REVISION``). Rejects that may go differently next time (internal errors,
time budget, unreadable file) are never reused, nor pages folded as duplicates (their record is not
kept); they are parsed again. The previous version's files are verified against its manifest before
anything is taken from them.

When every input is unchanged, the plan is ``unchanged``: the writer links the previous version's
tables into the new version instead of writing them (``pipeline.publish.writer``), so a refresh in
which nothing changed costs the hashing of the inputs and a few file operations.

``run(raw_dir, out_dir, ...)`` is the whole incremental job without Prefect: take the out-dir lock,
plan, parse what must be parsed over a process pool, publish (change report, gates, keep N).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.sources.files import SIDECAR_SUFFIX, discover_relative, max_page_bytes
from schemas import SCHEMA_VERSION, Manifest

LEDGER = "inputs.jsonl"
#: reject reasons that may go differently on another run: never reused
TRANSIENT_REASONS = ("internal error", "too slow to parse", "cannot read file")
#: the code that turns bytes into a result (relative to the repository root); part of the reuse key
CODE_GLOBS = (
    "pipeline/api.py",
    "pipeline/limits.py",
    "pipeline/process.py",
    "pipeline/sources/files.py",
    "pipeline/sources/decode.py",
    "pipeline/parse/*.py",
    "pipeline/normalize/*.py",
    "pipeline/normalize/*.toml",
    "schemas/models.py",
)
ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("procpipe.incremental")


@lru_cache(maxsize=1)
def _code_hash() -> str:
    digest = hashlib.sha256()
    for pattern in CODE_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def reuse_key() -> str:
    """What besides a page's bytes decides its result, hashed (see the module docstring)."""
    from pipeline.limits import current_limits
    from pipeline.version import parser_version

    limits = current_limits()
    parts = {
        "parser_version": parser_version(),
        "schema_version": SCHEMA_VERSION,
        "limits": {k: v for k, v in vars(limits).items() if k != "max_parse_seconds"},
        "code": _code_hash(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class InputKey:
    """The hashes that identify an input's content: its bytes and its sidecar's (None: no sidecar)."""

    sha256: str
    meta_sha256: str | None


def _sha256_file(path: str, size: int = 65536) -> str:
    """The hex sha256 of the file ``path``, read with plain ``os`` calls (``size``: the expected
    size, read at once): half the CPU of ``hashlib.file_digest`` on an open file object, for the
    few-KB files this hashes twice per input on every run."""
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = hashlib.sha256(os.read(fd, size + 1))
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def input_key(raw_dir: Path, rel: str, limit: int) -> InputKey | None:
    """The key of one input; None for one that is always processed again (a link, too large, unreadable).

    Plain string paths and ``os`` calls: this runs once per input on every refresh."""
    path = os.path.join(raw_dir, rel)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or st.st_size > limit:
            return None
        digest = _sha256_file(path, st.st_size)
    except OSError:
        return None
    head, name = os.path.split(path)
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name  # as Path.stem: sidecar_path(page)
    try:
        meta: str | None = _sha256_file(os.path.join(head, stem + SIDECAR_SUFFIX))
    except FileNotFoundError:
        meta = None
    except OSError:
        return None
    return InputKey(digest, meta)


def ledger_row(
    path: str,
    key: InputKey | None,
    outcome: str,
    *,
    record_id: str | None = None,
    line: int | None = None,
    reusable: bool = True,
) -> dict[str, Any]:
    """One row of ``inputs.jsonl``."""
    return {
        "path": path,
        "sha256": key.sha256 if key else None,
        "meta_sha256": key.meta_sha256 if key else None,
        "outcome": outcome,
        "record_id": record_id,
        "line": line,
        "reusable": bool(reusable and key is not None),
    }


def is_transient(reason: str) -> bool:
    return reason.startswith(TRANSIENT_REASONS)


@dataclass
class Plan:
    """What a run will parse and what it takes from the previous version."""

    raw_dir: Path
    paths: list[str]
    keys: dict[str, InputKey | None]
    reuse_key: str
    to_parse: list[str]
    reuse: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> ledger row (record/reject)
    previous: Path | None = None
    previous_manifest: Manifest | None = None
    unchanged: bool = False
    reason: str = ""  # why inputs are parsed again when they could have been reused

    @property
    def inputs(self) -> int:
        return len(self.paths)

    def describe(self) -> str:
        """One log line: how many inputs, how many parsed and reused, and why."""
        base = self.previous.name if self.previous else None
        if self.unchanged:
            return f"incremental: {self.inputs} inputs unchanged since {base}: nothing to parse"
        text = f"incremental: {self.inputs} inputs, {len(self.to_parse)} to parse, {len(self.reuse)} reused"
        if base:
            text += f" from {base}"
        return text + (f" ({self.reason})" if self.reason else "")

    def reused_results(self) -> Iterator[dict[str, Any]]:
        """The results taken from the previous version: records as their JSON line, rejects as dicts."""
        if not self.reuse or self.previous is None:
            return
        for name, outcome in (("procedures.jsonl", "record"), ("rejects.jsonl", "reject")):
            wanted = sorted(r["line"] for r in self.reuse.values() if r["outcome"] == outcome)
            if not wanted:
                continue
            found = 0
            with (self.previous / name).open("rb") as fh:
                for i, raw in enumerate(fh):
                    if found < len(wanted) and i == wanted[found]:
                        found += 1
                        line = raw.rstrip(b"\n")
                        yield {"record_line": line} if outcome == "record" else {"reject": json.loads(line)}
                        if found == len(wanted):
                            break
            if found != len(wanted):
                raise ValueError(f"{self.previous / name} lost lines the input ledger points at")


def _read_ledger(path: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                row = json.loads(raw)
                rows[row["path"]] = row
    return rows


def plan(raw_dir: Path, out_dir: Path, *, full: bool = False, paths: list[str] | None = None) -> Plan:
    """Hash every input under ``raw_dir`` and decide, against ``out_dir``'s current version, which
    inputs must be parsed and which results can be reused (``full``: parse everything).

    ``paths``: the inputs as ``discover_relative(raw_dir)`` just listed them (the flow's head start lists
    them first, to start parsing before the plan is done); None: listed here."""
    from pipeline.publish.versions import verify
    from pipeline.publish.writer import CORE_FILES, latest_version, read_manifest

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    paths = discover_relative(raw_dir) if paths is None else list(paths)
    limit = max_page_bytes()
    keys = {rel: input_key(raw_dir, rel, limit) for rel in paths}
    key = reuse_key()
    result = Plan(raw_dir, paths, keys, key, to_parse=list(paths))

    previous = latest_version(out_dir)
    if full:
        result.reason = "--full: everything parsed again"
        return result
    if previous is None:
        result.reason = "no previous version"
        return result
    try:
        manifest = read_manifest(previous)
    except Exception as exc:  # noqa: BLE001 - an unreadable manifest means nothing to reuse
        result.reason = f"previous version {previous.name} has no readable manifest ({type(exc).__name__})"
        return result
    result.previous, result.previous_manifest = previous, manifest
    if manifest.reuse_key != key:
        if manifest.parser_version != (now := _parser_version()):
            result.reason = (
                f"parser version changed ({manifest.parser_version} -> {now}): everything parsed again"
            )
        elif manifest.reuse_key is None:
            result.reason = f"previous version {previous.name} has no input ledger: everything parsed"
        else:
            result.reason = "parser code, schema or limits changed: everything parsed again"
        return result
    needed = [n for n in (*CORE_FILES, LEDGER) if n in manifest.files]
    problems = verify(previous, files=needed)
    if problems or LEDGER not in manifest.files:
        result.reason = (
            f"previous version {previous.name} does not verify ({'; '.join(problems[:2]) or 'no ledger'})"
        )
        return result

    ledger = _read_ledger(previous / LEDGER)
    matched: dict[str, dict[str, Any]] = {}
    for rel in paths:
        k, row = keys[rel], ledger.get(rel)
        if k is None or row is None or not row.get("reusable"):
            continue
        if row.get("sha256") == k.sha256 and row.get("meta_sha256") == k.meta_sha256:
            matched[rel] = row
    if len(matched) == len(paths) == len(ledger):
        result.unchanged, result.to_parse, result.reuse = True, [], matched
        return result
    result.reuse = {p: r for p, r in matched.items() if r["outcome"] in ("record", "reject")}
    result.to_parse = [p for p in paths if p not in result.reuse]
    return result


def _parser_version() -> str:
    from pipeline.version import parser_version

    return parser_version()


def run(
    raw_dir: Path,
    out_dir: Path,
    *,
    workers: int = 2,
    batch_size: int = 200,
    run_id: str | None = None,
    keep: int | None = None,
    wait: float = 0.0,
    gates: Any = None,
    force: bool = False,
    full: bool = False,
) -> Manifest:
    """The incremental job without Prefect: lock, plan, parse what changed, publish; returns the manifest.

    ``gates`` is a ``GateConfig``, a path to a gates file, or None (the defaults); ``keep`` how many
    versions to keep (None: the default, 10); ``wait`` how long to wait for another run's lock.
    """
    from pipeline.process import iter_results, staging_folder
    from pipeline.publish.lock import out_dir_lock
    from pipeline.publish.writer import new_run_id, publish

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    run_id = run_id or new_run_id()
    with out_dir_lock(out_dir, run_id=run_id, wait=wait):
        the_plan = plan(raw_dir, out_dir, full=full)
        log.info("%s", the_plan.describe())
        size = max(1, batch_size)
        todo = the_plan.to_parse
        batches = [todo[i : i + size] for i in range(0, len(todo), size)]
        with staging_folder() as stage:
            results = iter_results(batches, raw_dir, workers=workers, stage=stage)
            return publish(
                results, out_dir, inputs=the_plan.inputs, run_id=run_id, keep=keep, gates=gates, force=force,
                plan=the_plan,
            )  # fmt: skip
