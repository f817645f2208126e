"""Raw pages behind an fsspec URL (``s3://bucket/raw``, ``gcs://...``, ``file:///data/raw``...).

A cluster's workers may not share the flow's disk, so the raw folder can be any URL that fsspec can
open from wherever the batch runs. Local paths and ``file://`` URLs keep the local fast path
(``pipeline.sources.files``: no fsspec at all). For any other URL:

- ``discover_url`` lists the inputs with the same rules as ``files.discover``: every file under the
  folder, sorted by relative path, except sidecars (``*.meta.json``) and hidden names.
- ``process_batch_url`` copies one batch (pages and their sidecars, each at most the page size limit
  plus one byte) into a temporary folder on the machine running the batch and calls
  ``pipeline.process.process_batch`` on it, so every read rule, reject reason and record is exactly
  the local one. A page over the size limit is not downloaded: it is rejected from its listed size.

Not supported for URLs: incremental reuse (every page is parsed on every run; inputs are not hashed
from the flow process) and symbolic-link checks (object stores have none).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pipeline.sources.files import SIDECAR_SUFFIX, max_page_bytes

Result = dict[str, Any]


def local_path(location: str | os.PathLike[str]) -> str | None:
    """The local path a location names (a plain path or a ``file://`` URL), or None for other URLs."""
    text = os.fspath(location)
    if "://" not in text and "::" not in text:
        return text
    parts = urlsplit(text)
    if parts.scheme in ("file", "local") and parts.netloc in ("", "localhost") and "::" not in text:
        return unquote(parts.path) or "/"
    return None


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for a location that is not on the local disk (needs fsspec)."""
    return local_path(location) is None


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    return fs, str(root).rstrip("/")


def exists_dir(url: str) -> bool:
    """Whether ``url`` is a folder (a prefix holding objects, on an object store)."""
    fs, root = _fs(url)
    try:
        return bool(fs.isdir(root))
    except Exception:  # noqa: BLE001 - an unreachable store is "not found" to the caller
        return False


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def discover_url(url: str) -> list[str]:
    """Relative posix paths of every input under ``url`` (sorted; sidecars and hidden names skipped)."""
    fs, root = _fs(url)
    found = []
    for name in fs.find(root, withdirs=False):
        rel = str(name)[len(root) :].lstrip("/")
        if rel and not _hidden(rel) and not rel.endswith(SIDECAR_SUFFIX):
            found.append(rel)
    return sorted(found)


def _sidecar(rel: str) -> str:
    head, _, name = rel.rpartition("/")
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name  # as Path.stem: files.sidecar_path
    return f"{head}/{stem}{SIDECAR_SUFFIX}" if head else stem + SIDECAR_SUFFIX


def _fetch(fs: Any, src: str, dst: Path, limit: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with fs.open(src, "rb") as fh:
        dst.write_bytes(fh.read(limit + 1))  # read_page judges the size of what arrives


def process_batch_url(paths: list[str], raw_url: str, stage: str | None = None) -> list[Result]:
    """``process.process_batch`` for a raw folder behind a URL (a local one is read in place); with
    ``stage``, records come prepared for publishing as there."""
    from pipeline.process import process_batch, reject_result

    local = local_path(raw_url)
    if local is not None:
        return process_batch(paths, local, stage)
    fs, root = _fs(raw_url)
    limit = max_page_bytes()
    skipped: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="procpipe-batch-") as tmp:
        base = Path(tmp)
        for rel in paths:
            if rel.startswith("/") or ".." in rel.split("/"):
                skipped[rel] = reject_result(rel, "read", f"not under the raw folder {raw_url}")
                continue
            try:
                size = fs.size(f"{root}/{rel}")
                if size is not None and size > limit:
                    skipped[rel] = reject_result(rel, "read", f"page too large ({size} bytes > {limit})")
                    continue
                _fetch(fs, f"{root}/{rel}", base / rel, limit)
            except Exception as exc:  # noqa: BLE001 - one unreadable object must not lose the batch
                reason = f"cannot read file ({type(exc).__name__})"
                skipped[rel] = reject_result(rel, "read", reason)
                continue
            side = _sidecar(rel)
            try:
                if fs.exists(f"{root}/{side}"):
                    _fetch(fs, f"{root}/{side}", base / side, limit)
            except Exception as exc:  # noqa: BLE001 - as files.read_sidecar: the page is rejected
                name = side.rpartition("/")[2]
                reason = f"broken sidecar {name}: cannot read ({type(exc).__name__})"
                skipped[rel] = reject_result(rel, "read", reason)
        todo = [p for p in paths if p not in skipped]
        done = iter(process_batch(todo, str(base), stage))
        return [skipped[p] if p in skipped else next(done) for p in paths]


def plan_url(raw_url: str, *, full: bool = False) -> Any:
    """An ``incremental.Plan`` for a raw folder behind a URL: every input is parsed (no reuse)."""
    from pipeline.incremental import Plan, reuse_key

    paths = discover_url(raw_url)
    reason = "--full: everything parsed again" if full else "raw folder is a URL: everything parsed"
    return Plan(Path(raw_url), paths, dict.fromkeys(paths), reuse_key(), to_parse=list(paths), reason=reason)
