"""The raw store the scraper writes, and the crawl journal that lets an interrupted crawl resume.

Layout: ``<raw_dir>/<source>/<code_system>/<code>.<ext>`` with ``<code>.meta.json`` beside it
(``url``, ``final_url``, ``status``, ``fetched_at``, ``content_type``, ``etag``, ``last_modified``,
``sha256``, ``source``, plus ``code_system``/``code`` when the URL names them). A code URL is
``.../code/<code_system>/<code>-<words>``: the system is kept as the URL spells it, the code is the
part before the first "-". Any other URL is stored as ``<raw_dir>/<source>/<slug>.<ext>`` with a safe
slug of its path (and a short hash when the slug had to change). ``<ext>`` follows the content type
(``.html``, ``.txt``, ``.md``) because the processing side picks its parser by extension.

Safety: every name is reduced to ``[A-Za-z0-9._-]`` without leading dots, and the final path (with
symbolic links resolved) must lie inside ``raw_dir``, so no URL can write elsewhere. Files are written
to a hidden temporary file in the same folder and renamed into place (page first, then sidecar), so a
kill leaves the old or the new version, never half of one. Saving a body whose sha256 equals the
stored one writes nothing, so the file's mtime stays put.

``CrawlState`` is an append-only JSON-lines journal in ``<raw_dir>/.crawl-state/`` (hidden, so input
discovery skips it): a header per run, one line per finished URL, a footer when the run completes. A
rerun after an interrupted run skips URLs the journal marks as stored whose file still matches its
sha256; a rerun after a completed run starts a new run (conditional GETs for everything).

Settings that change it: ``durable`` (fsync before rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

SIDECAR_SUFFIX = ".meta.json"
PAGE_EXTS = (".html", ".txt", ".md")
STATE_DIR = ".crawl-state"
STORED_OUTCOMES = frozenset({"fetched", "not_modified", "unchanged"})

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SYSTEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.]{0,23}$")


class StoreError(Exception):
    """A write the store refuses (a path outside the raw folder, a symlinked folder, ...)."""


def safe_name(text: str, max_len: int = 80) -> str:
    """``text`` reduced to a file-name-safe slug: ``[A-Za-z0-9._-]``, no leading dot, never empty."""
    s = _UNSAFE.sub("-", text).strip(".-_")
    s = s[:max_len].rstrip(".-_")
    return s or "_"


def ext_for(content_type: str | None) -> str:
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt == "text/plain":
        return ".txt"
    if mt in ("text/markdown", "text/x-markdown"):
        return ".md"
    return ".html"


def code_of_url(url: str) -> tuple[str, str] | None:
    """(code_system, code) from ``.../code/<system>/<code>-<words>``, or None."""
    segs = [unquote(s) for s in urlsplit(url).path.split("/") if s]
    for i, seg in enumerate(segs):
        if seg.lower() == "code" and len(segs) == i + 3:
            system, code = segs[i + 1], segs[i + 2].split("-", 1)[0]
            if _SYSTEM.match(system) and _CODE.match(code):
                return system, code
    return None


def slug_of_url(url: str) -> str:
    """A stable, safe file stem for a URL without a code (hash-suffixed when the slug is lossy)."""
    parts = urlsplit(url)
    raw = unquote(parts.path).strip("/").replace("/", "_") or "index"
    if parts.query:
        raw += "_" + unquote(parts.query)
    slug = safe_name(raw, 60)
    if slug != raw:
        slug = f"{slug}-{hashlib.sha1(url.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"
    return slug


def source_of(url: str, source: str | None) -> str:
    """The store's top folder: the configured source name, else the URL's host."""
    return safe_name(source or urlsplit(url).hostname or "unknown", 64)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class StoredPage:
    """A page already in the store: its file, sidecar path and sidecar fields."""

    path: Path
    meta_path: Path
    meta: dict[str, Any]

    @property
    def sha256(self) -> str | None:
        value = self.meta.get("sha256")
        return value if isinstance(value, str) else None

    def intact(self) -> bool:
        """True when the file's bytes still match the sidecar's sha256."""
        try:
            return self.sha256 is not None and sha256_hex(self.path.read_bytes()) == self.sha256
        except OSError:
            return False

    def conditional_headers(self) -> dict[str, str]:
        """If-None-Match / If-Modified-Since from the sidecar (only when the stored file is intact)."""
        headers: dict[str, str] = {}
        etag, lm = self.meta.get("etag"), self.meta.get("last_modified")
        if isinstance(etag, str) and etag and "\n" not in etag and "\r" not in etag:
            headers["If-None-Match"] = etag
        if isinstance(lm, str) and lm and "\n" not in lm and "\r" not in lm:
            headers["If-Modified-Since"] = lm
        return headers


def _write_atomic(path: Path, data: bytes, durable: bool) -> Path:
    """Write ``data`` to a hidden temp file beside ``path``; returns the temp path (not yet renamed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


class RawStore:
    """Reads and writes pages under ``raw_dir`` (see the module docstring)."""

    def __init__(self, raw_dir: str | Path, *, durable: bool = True) -> None:
        self.raw_dir = Path(raw_dir)
        self.durable = durable

    def stem_for(self, url: str, source: str | None, final_url: str | None = None) -> Path:
        """Where ``url``'s page lives, without extension (relative to ``raw_dir``)."""
        src = source_of(url, source)
        key = (code_of_url(final_url) if final_url else None) or code_of_url(url)
        if key:
            system, code = key
            return Path(src, safe_name(system, 32), safe_name(code, 24))
        return Path(src, slug_of_url(final_url or url))

    def _checked(self, rel: Path) -> Path:
        """Absolute path for ``rel`` after proving it stays inside ``raw_dir`` (symlinks resolved)."""
        if rel.is_absolute() or any(p in ("..", ".", "") for p in rel.parts):
            raise StoreError(f"unsafe store path {rel}")
        root = self.raw_dir.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise StoreError(f"store path {rel} resolves outside the raw folder")
        return target

    def find(self, stem: Path) -> StoredPage | None:
        """The stored page with this stem (any extension) and its sidecar, or None."""
        try:
            base = self._checked(stem.with_name(stem.name + SIDECAR_SUFFIX))
        except StoreError:
            return None
        meta_path = base
        try:
            meta = json.loads(meta_path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        for ext in PAGE_EXTS:
            page = meta_path.with_name(stem.name + ext)
            if page.is_file():
                return StoredPage(page, meta_path, meta)
        return None

    def lookup(self, url: str, source: str | None, rel: str | None = None) -> StoredPage | None:
        """The stored copy of ``url``: at ``rel`` (from the journal) if given, else at its usual place."""
        if rel:
            p = Path(rel)
            found = self.find(p.with_suffix("") if p.suffix in PAGE_EXTS else p)
            if found:
                return found
        return self.find(self.stem_for(url, source))

    def save(
        self,
        *,
        url: str,
        final_url: str,
        source: str | None,
        status: int,
        content: bytes,
        content_type: str | None,
        etag: str | None,
        last_modified: str | None,
    ) -> tuple[str, Path]:
        """Store a fetched page. Returns ("fetched" | "unchanged", page path); unchanged writes nothing."""
        stem = self.stem_for(url, source, final_url)
        page_rel = stem.with_name(stem.name + ext_for(content_type))
        page = self._checked(page_rel)
        digest = sha256_hex(content)
        old = self.find(stem)
        if old is not None and old.path == page and old.sha256 == digest and old.intact():
            return "unchanged", page
        page.parent.mkdir(parents=True, exist_ok=True)
        page = self._checked(page_rel)  # again: mkdir may have met a symlinked folder
        meta_path = page.with_name(stem.name + SIDECAR_SUFFIX)
        meta: dict[str, Any] = {
            "url": url,
            "final_url": final_url,
            "status": status,
            "fetched_at": utc_now_iso(),
            "content_type": content_type,
            "etag": etag,
            "last_modified": last_modified,
            "sha256": digest,
            "source": source_of(url, source),
        }
        key = code_of_url(final_url) or code_of_url(url)
        if key:
            meta["code_system"], meta["code"] = key
        tmp_page = _write_atomic(page, content, self.durable)
        try:
            tmp_meta = _write_atomic(meta_path, json.dumps(meta, indent=1).encode() + b"\n", self.durable)
        except BaseException:
            tmp_page.unlink(missing_ok=True)
            raise
        os.replace(tmp_page, page)
        os.replace(tmp_meta, meta_path)
        if old is not None and old.path != page:
            old.path.unlink(missing_ok=True)  # the content type changed the extension
        return "fetched", page

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.raw_dir.resolve()).as_posix()


# --------------------------------------------------------------------------- crawl journal


class StateLocked(Exception):
    """Another crawl holds the state file."""


class CrawlState:
    """Append-only journal of one crawl job (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.resumed = False
        self.started = ""  # ISO time the run began (resumed runs keep the original)
        self.entries: dict[str, dict[str, Any]] = {}
        self._fh: IO[str] | None = None

    @staticmethod
    def default_path(raw_dir: Path, key: str) -> Path:
        return Path(raw_dir) / STATE_DIR / f"{safe_name(key, 100)}.jsonl"

    def _read(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return lines
        for ln in text.splitlines():
            try:
                obj = json.loads(ln)
            except ValueError:
                continue  # a line torn by a kill
            if isinstance(obj, dict):
                lines.append(obj)
        return lines

    def open(self, fingerprint: str) -> bool:
        """Start or resume the run for ``fingerprint``; returns True when resuming."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StateLocked(f"another crawl is using {self.path}") from None
        old = self._read()
        first = old[0] if old else {}
        finished = any(o.get("event") == "completed" for o in old)
        if old and first.get("event") == "run" and first.get("fingerprint") == fingerprint and not finished:
            self.resumed = True
            self.started = str(first.get("started") or "")
            for o in old[1:]:
                if "url" in o:
                    self.entries[o["url"]] = o
            lock.seek(0, os.SEEK_END)
            if lock.tell() and not self.path.read_bytes().endswith(b"\n"):
                lock.write("\n")  # end the line a kill tore, so the next entry starts clean
        else:
            lock.seek(0)
            lock.truncate()
            self.started = utc_now_iso()
            header = {"event": "run", "fingerprint": fingerprint, "started": self.started}
            lock.write(json.dumps(header) + "\n")
            lock.flush()
        self._fh = lock
        return self.resumed

    def record(self, url: str, outcome: str, *, path: str | None = None, sha256: str | None = None) -> None:
        """Journal one finished URL (flushed at once, so a kill loses at most the line being written)."""
        entry: dict[str, Any] = {"url": url, "outcome": outcome}
        if path:
            entry["path"] = path
        if sha256:
            entry["sha256"] = sha256
        self.entries[url] = entry
        if self._fh is not None:
            self._fh.write(json.dumps(entry) + "\n")
            self._fh.flush()

    def stored(self, url: str) -> dict[str, Any] | None:
        """The journal entry of ``url`` when this run already stored it."""
        e = self.entries.get(url)
        return e if e and e.get("outcome") in STORED_OUTCOMES and e.get("path") else None

    def complete(self) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps({"event": "completed", "finished": utc_now_iso()}) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
