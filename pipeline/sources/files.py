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
    return [raw_dir / rel for rel in discover_relative(raw_dir)]


def discover_relative(raw_dir: Path | str) -> list[str]:
    """``discover``'s inputs as posix paths relative to ``raw_dir``, sorted: one ``scandir`` per folder
    and no ``stat`` per file (the entry types come with the listing), which matters at 10,000s of pages.

    As ``os.walk`` (which ``discover`` used): symbolic links to folders are neither descended nor
    listed, a folder that cannot be read is skipped; a file is listed when it is a regular file or a
    symbolic link (a link is checked when it is read)."""
    found: list[str] = []
    todo: list[tuple[str, str]] = [(os.fspath(raw_dir), "")]
    while todo:
        folder, prefix = todo.pop()
        try:
            with os.scandir(folder) as entries:
                listing = list(entries)
        except OSError:
            continue
        for entry in listing:
            name = entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not name.startswith(".") and not entry.is_symlink():
                    todo.append((entry.path, f"{prefix}{name}/"))
            elif not name.startswith(".") and not name.endswith(SIDECAR_SUFFIX):
                try:
                    listed = entry.is_symlink() or entry.is_file()
                except OSError:
                    listed = False
                if listed:
                    found.append(prefix + name)
    found.sort()
    return found


def max_page_bytes() -> int:
    """The page size limit in force: ``PROCPIPE_MAX_PAGE_BYTES`` when set, else ``MAX_PAGE_BYTES``."""
    value = os.environ.get(MAX_PAGE_BYTES_ENV, "").strip()
    return int(value) if value.isdigit() else MAX_PAGE_BYTES


def relative_path(path: Path | str, raw_dir: Path | str) -> str | None:
    """``path`` relative to ``raw_dir`` as posix text, or None when it lies outside (lexically)."""
    a, r = os.path.abspath(path), os.path.abspath(raw_dir)
    if isinstance(a, str) and isinstance(r, str) and not a.startswith("//") and not r.startswith("//"):
        # both are normalised absolute paths: plain text does what PurePosixPath.relative_to does
        if a == r:
            return "."
        prefix = r if r.endswith("/") else r + "/"
        return a[len(prefix) :] if a.startswith(prefix) else None
    try:  # "//" roots (kept by POSIX) and anything unusual: as pathlib sees it
        return Path(a).relative_to(Path(r)).as_posix()
    except ValueError:
        return None


def _lstat_if_plain(name: str, root: str, rel: str) -> os.stat_result | None:
    """``lstat`` of the file ``name`` when it is literally ``root/rel`` and neither it nor a folder
    between ``root`` and it is a symbolic link; else None.

    Then ``realpath(name)`` is ``realpath(root)/rel``: inside the raw folder without resolving
    anything (``realpath`` costs an ``lstat`` per component of the absolute path, twice per file).
    None sends the caller down the full ``realpath`` check, which decides every other case.
    """
    if rel == "." or name != os.path.join(root, rel):
        return None
    try:
        if "/" in rel:
            folder = root
            for part in rel.split("/")[:-1]:
                folder = os.path.join(folder, part)
                if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a link or not a folder
                    return None
        st = os.lstat(name)
    except (OSError, ValueError):
        return None
    return None if stat.S_ISLNK(st.st_mode) else st


def _read_fd(name: str, want: int, limit: int | None) -> bytes:
    """Read the file ``name``: up to ``want`` bytes, then on to ``limit`` + 1 if it had grown (or to
    the end when ``limit`` is None). One ``open`` and usually one ``read`` of exactly the size."""
    fd = os.open(name, os.O_RDONLY)
    try:
        parts: list[bytes] = []
        got = 0
        while True:
            chunk = os.read(fd, max(want - got, 1))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
            if got >= want:
                if limit is not None and want > limit:
                    break
                want = limit + 1 if limit is not None else want + max(want, 65536)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_sidecar(page: Path, raw_dir: Path | None = None) -> dict[str, Any]:
    """The validated sidecar fields given for ``page`` (JSON-able), or {} when there is no sidecar.

    With ``raw_dir``, a sidecar that is a symbolic link leading outside it is refused, never read.
    """
    page = Path(page)
    if raw_dir is not None:
        rel = relative_path(page, raw_dir)
        if rel is not None and _lstat_if_plain(str(page), str(Path(raw_dir)), rel) is not None:
            return _plain_sidecar(page, raw_dir)
    return _sidecar(page, raw_dir)


def _plain_sidecar(page: Path, raw_dir: Path | None) -> dict[str, Any]:
    """``read_sidecar`` for a page whose folder is known to lie inside ``raw_dir`` by its own path (no
    symbolic link on the way): a sidecar that is no link is inside too, so nothing is resolved."""
    side = os.path.join(os.path.dirname(page), page.stem + SIDECAR_SUFFIX)
    try:
        st = os.lstat(side)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return _sidecar(page, raw_dir)
    if stat.S_ISLNK(st.st_mode):
        return _sidecar(page, raw_dir)
    if not stat.S_ISREG(st.st_mode):
        return {}  # as Path.is_file(): a folder or a device is no sidecar
    name = os.path.basename(side)
    if st.st_size > MAX_SIDECAR_BYTES:
        raise RejectedPage(f"broken sidecar {name}: larger than {MAX_SIDECAR_BYTES} bytes", stage="read")
    try:
        data = _read_fd(side, st.st_size + 1, None)
    except OSError as exc:
        reason = f"broken sidecar {name}: cannot read ({exc.strerror or exc})"
        raise RejectedPage(reason, stage="read") from exc
    return _validated(data, name)


def _sidecar(page: Path, raw_dir: Path | None) -> dict[str, Any]:
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
    return _validated(data, name)


def _validated(data: bytes, name: str) -> dict[str, Any]:
    # Sidecar.model_validate_json, then model_dump(mode="json", exclude_unset=True), without wrappers
    try:
        sidecar = Sidecar.__pydantic_validator__.validate_json(data)
    except ValidationError as exc:
        raise RejectedPage(f"broken sidecar {name}: {_first_error(exc)}", stage="read") from exc
    meta: dict[str, Any] = Sidecar.__pydantic_serializer__.to_python(sidecar, mode="json", exclude_unset=True)
    return meta


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).splitlines()[0]
    if err.get("type") == "json_invalid":
        return f"invalid JSON ({msg.removeprefix('Invalid JSON: ')})"
    if err.get("type") == "model_type":
        return "not a JSON object"
    return f"{where}: {msg}" if where else msg


_PATH = type(Path())


def read_page(path: Path, raw_dir: Path, *, max_bytes: int | None = None, rel: str | None = None) -> RawPage:
    """Read one input file and its sidecar; raises ``RejectedPage`` (stage "read") when it cannot.

    ``rel``: ``relative_path(path, raw_dir)`` when the caller has it already (a worker reports the
    page by it either way); None: worked out here."""
    path = path if type(path) is _PATH else Path(path)  # re-parsing a Path costs more than the read
    raw_dir = raw_dir if type(raw_dir) is _PATH else Path(raw_dir)
    if rel is None:
        rel = relative_path(path, raw_dir)
    if rel is None:
        raise RejectedPage(f"not under the raw folder {raw_dir}", stage="read", detail=str(path))
    limit = max_page_bytes() if max_bytes is None else max_bytes
    name = str(path)
    plain = _lstat_if_plain(name, str(raw_dir), rel)
    if plain is None:
        target = Path(os.path.realpath(path))
        if relative_path(target, Path(os.path.realpath(raw_dir))) is None:
            raise RejectedPage("symbolic link leads outside the raw folder", stage="read", detail=str(target))
    suffix = path.suffix.lower()
    if suffix not in PAGE_SUFFIXES:
        what = f"file type {suffix}" if suffix else "file type (no extension)"
        expected = "expected one of " + " ".join(PAGE_SUFFIXES)
        raise RejectedPage(f"unsupported {what}", stage="read", detail=expected)
    try:
        st = plain if plain is not None else path.stat()  # no link: its lstat is its stat
        if not stat.S_ISREG(st.st_mode):
            raise RejectedPage("not a regular file", stage="read")
        size = st.st_size
        if size > limit:
            raise RejectedPage(f"page too large ({size} bytes > {limit})", stage="read")
        content = _read_fd(name, size + 1, limit)  # the file may grow between stat and read
    except OSError as exc:
        raise RejectedPage(f"cannot read file ({exc.strerror or type(exc).__name__})", stage="read") from exc
    if len(content) > limit:
        raise RejectedPage(f"page too large (over {limit} bytes)", stage="read")
    meta = _plain_sidecar(path, raw_dir) if plain is not None else _sidecar(path, raw_dir)
    declared = meta.get("sha256")
    if declared:
        actual = sha256_hex(content)
        if actual != declared:
            raise RejectedPage(
                "content does not match the sidecar's sha256 (corrupt raw store?)",
                stage="read",
                detail=f"sidecar {declared}, file {actual}",
            )
    return RawPage(path=rel, content=content, meta=meta)


#: The last page hashed and its digest: ``read_page`` checks a sidecar's sha256, then ``parse_page``
#: needs the same digest for the record; the bytes object itself (by identity) is the key.
_last_digest: tuple[bytes, str] | None = None


def sha256_hex(content: bytes) -> str:
    """The hex sha256 of ``content``, computed once per page read (see ``_last_digest``)."""
    global _last_digest
    last = _last_digest
    if last is not None and last[0] is content:
        return last[1]
    digest = hashlib.sha256(content).hexdigest()
    if type(content) is bytes:  # immutable: the same object always has the same digest
        _last_digest = (content, digest)
    return digest
