"""Local raw input: which files under ``raw_dir`` are inputs, and how one is read with its sidecar.

Discovery is deliberately wide so that every file a person drops into ``raw/`` is accounted for:
``discover`` returns every regular file under ``raw_dir`` (recursively, sorted) except sidecars
(``*.meta.json``) and hidden files or folders (a name starting with "."). A file whose suffix is not
one of ``PAGE_SUFFIXES`` is still an input; ``read_page`` rejects it ("unsupported file type .pdf"),
so it shows up in ``rejects`` instead of vanishing. Symbolic links are never followed out of
``raw_dir``: linked folders are not descended, and a linked file that resolves outside ``raw_dir``
(or nowhere) is rejected.

``read_page`` also reads the optional sidecar ``<stem>.meta.json`` beside a page (``63185.txt`` ->
``63185.meta.json``). Its known fields are type-checked; unknown keys are ignored. A broken sidecar,
a page over the size limit (``MAX_PAGE_BYTES``, or the environment variable
``PROCPIPE_MAX_PAGE_BYTES``) and a page whose bytes do not match the sidecar's ``sha256`` (a corrupt
raw store) raise ``RejectedPage`` with stage ``read``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import RejectedPage

PAGE_SUFFIXES = (".html", ".htm", ".txt", ".md")
SIDECAR_SUFFIX = ".meta.json"
#: Pages larger than this are refused before they are read (5 MiB).
MAX_PAGE_BYTES = 5 * 1024 * 1024
MAX_PAGE_BYTES_ENV = "PROCPIPE_MAX_PAGE_BYTES"
#: A sidecar is a few hundred bytes; anything much larger is not one.
MAX_SIDECAR_BYTES = 64 * 1024


@dataclass
class RawPage:
    """One input page: its path relative to the raw folder (posix), its bytes and its sidecar fields."""

    path: str
    content: bytes
    meta: dict[str, Any] = field(default_factory=dict)


class Sidecar(BaseModel):
    """The fields of a ``<stem>.meta.json`` sidecar. Types are strict; unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    url: str | None = None
    code_system: str | None = None
    code: str | None = None
    fetched_at: datetime | None = Field(default=None, strict=False)
    content_type: str | None = None
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    source: str | None = None

    @field_validator("fetched_at", mode="before")
    @classmethod
    def _date_only(cls, v: Any) -> Any:
        # a hand-written sidecar may give just the day: midnight UTC
        if isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-":
            return v + "T00:00:00Z"
        return v

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, v: str | None) -> str | None:
        if v is not None:
            v = v.strip().lower()
            if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
                raise ValueError("not a sha256 hex digest")
        return v


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(SIDECAR_SUFFIX)


def sidecar_path(page: Path) -> Path:
    """``dir/63185.txt`` -> ``dir/63185.meta.json`` (the stem loses only the last suffix)."""
    return page.with_name(page.stem + SIDECAR_SUFFIX)


def discover(raw_dir: Path) -> list[Path]:
    """Every input file under ``raw_dir`` (recursive, sorted); sidecars and hidden entries skipped."""
    raw_dir = Path(raw_dir)
    found: list[Path] = []
    # os.walk does not descend into symlinked folders (followlinks=False)
    for root, dirs, files in os.walk(raw_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(root, d))]
        for name in files:
            if name.startswith(".") or name.endswith(SIDECAR_SUFFIX):
                continue
            p = Path(root, name)
            if p.is_symlink() or p.is_file():
                found.append(p)
    return sorted(found, key=lambda p: p.relative_to(raw_dir).as_posix())


def max_page_bytes() -> int:
    """The page size limit in force: ``PROCPIPE_MAX_PAGE_BYTES`` when set, else ``MAX_PAGE_BYTES``."""
    value = os.environ.get(MAX_PAGE_BYTES_ENV, "").strip()
    return int(value) if value.isdigit() else MAX_PAGE_BYTES


def relative_path(path: Path, raw_dir: Path) -> str | None:
    """``path`` relative to ``raw_dir`` as posix text, or None when it lies outside (lexically)."""
    path, raw_dir = Path(os.path.abspath(path)), Path(os.path.abspath(raw_dir))
    try:
        return path.relative_to(raw_dir).as_posix()
    except ValueError:
        return None


def read_sidecar(page: Path, raw_dir: Path | None = None) -> dict[str, Any]:
    """The validated sidecar fields given for ``page`` (JSON-able), or {} when there is no sidecar.

    With ``raw_dir``, a sidecar that is a symbolic link leading outside it is refused, never read.
    """
    side = sidecar_path(page)
    if not side.is_file():
        return {}
    name = side.name
    real_root = Path(os.path.realpath(raw_dir)) if raw_dir is not None else None
    if real_root is not None and relative_path(Path(os.path.realpath(side)), real_root) is None:
        raise RejectedPage(f"broken sidecar {name}: symbolic link leads outside the raw folder", stage="read")
    try:
        if side.stat().st_size > MAX_SIDECAR_BYTES:
            raise RejectedPage(f"broken sidecar {name}: larger than {MAX_SIDECAR_BYTES} bytes", stage="read")
        data = side.read_bytes()
    except OSError as exc:
        reason = f"broken sidecar {name}: cannot read ({exc.strerror or exc})"
        raise RejectedPage(reason, stage="read") from exc
    try:
        sidecar = Sidecar.model_validate_json(data)
    except ValidationError as exc:
        raise RejectedPage(f"broken sidecar {name}: {_first_error(exc)}", stage="read") from exc
    return sidecar.model_dump(mode="json", exclude_unset=True)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).splitlines()[0]
    if err.get("type") == "json_invalid":
        return f"invalid JSON ({msg.removeprefix('Invalid JSON: ')})"
    if err.get("type") == "model_type":
        return "not a JSON object"
    return f"{where}: {msg}" if where else msg


def read_page(path: Path, raw_dir: Path, *, max_bytes: int | None = None) -> RawPage:
    """Read one input file and its sidecar; raises ``RejectedPage`` (stage "read") when it cannot."""
    path, raw_dir = Path(path), Path(raw_dir)
    rel = relative_path(path, raw_dir)
    if rel is None:
        raise RejectedPage(f"not under the raw folder {raw_dir}", stage="read", detail=str(path))
    limit = max_page_bytes() if max_bytes is None else max_bytes
    target = Path(os.path.realpath(path))
    if relative_path(target, Path(os.path.realpath(raw_dir))) is None:
        raise RejectedPage("symbolic link leads outside the raw folder", stage="read", detail=str(target))
    suffix = path.suffix.lower()
    if suffix not in PAGE_SUFFIXES:
        what = f"file type {suffix}" if suffix else "file type (no extension)"
        expected = "expected one of " + " ".join(PAGE_SUFFIXES)
        raise RejectedPage(f"unsupported {what}", stage="read", detail=expected)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise RejectedPage("not a regular file", stage="read")
        size = st.st_size
        if size > limit:
            raise RejectedPage(f"page too large ({size} bytes > {limit})", stage="read")
        with path.open("rb") as fh:
            content = fh.read(limit + 1)  # the file may grow between stat and read
    except OSError as exc:
        raise RejectedPage(f"cannot read file ({exc.strerror or type(exc).__name__})", stage="read") from exc
    if len(content) > limit:
        raise RejectedPage(f"page too large (over {limit} bytes)", stage="read")
    meta = read_sidecar(path, raw_dir)
    declared = meta.get("sha256")
    if declared:
        actual = hashlib.sha256(content).hexdigest()
        if actual != declared:
            raise RejectedPage(
                "content does not match the sidecar's sha256 (corrupt raw store?)",
                stage="read",
                detail=f"sidecar {declared}, file {actual}",
            )
    return RawPage(path=rel, content=content, meta=meta)
