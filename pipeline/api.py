"""The one-page Python API: bytes in, a validated ProcedureRecord out (or RejectedPage).

``parse_page`` never lets anything else escape: every input, however hostile, ends as a record or a
``RejectedPage`` with a one-line reason and the stage that refused it. The per-page limits of
``pipeline.limits`` (size, HTML elements, list items, list depth, time budget) are enforced here.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from pipeline.errors import RejectedPage
from pipeline.limits import (
    Limits,
    ParseTimeout,
    check_deadline,
    check_document,
    check_size,
    current_limits,
    precheck,
    time_budget,
)
from pipeline.parse import parse_document
from pipeline.sources.decode import charset_of, clean_text, decode_bytes, detect_kind
from pipeline.sources.files import sha256_hex
from schemas import ProcedureRecord

#: Longest reject reason kept (one line); the rest is cut with an ellipsis.
MAX_REASON = 300


def parse_page(
    content: bytes | str,
    *,
    url: str | None = None,
    path: str | None = None,
    meta: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> ProcedureRecord:
    """Parse one page into a validated record.

    ``meta`` takes the sidecar fields (``url``, ``code_system``, ``code``, ``fetched_at``,
    ``content_type``, ...); ``url`` and ``path`` override and complete it. ``limits`` defaults to
    ``Limits.from_env()``. Raises ``RejectedPage`` with a one-line reason when the page cannot
    become a record, and nothing else.
    """
    lim = limits if limits is not None else current_limits()
    try:
        if isinstance(content, str):
            # lone surrogates cannot be encoded as UTF-8: keep them in the hash, replace them in the text
            raw = content.encode("utf-8", "surrogatepass")
        elif isinstance(content, bytes | bytearray | memoryview):
            raw = bytes(content)
        else:
            raise RejectedPage(f"not page content ({type(content).__name__})", stage="read")
        check_size(len(raw), lim)
        try:
            with time_budget(lim.max_parse_seconds):
                return _parse(raw, content, url=url, path=path, meta=meta, limits=lim)
        except ParseTimeout as exc:
            raise RejectedPage(str(exc), stage="parse") from None
    except RejectedPage as exc:
        raise _one_line(exc) from exc.__cause__


def _parse(
    raw: bytes,
    content: bytes | str | bytearray | memoryview,
    *,
    url: str | None,
    path: str | None,
    meta: Mapping[str, Any] | None,
    limits: Limits,
) -> ProcedureRecord:
    from pipeline.normalize import build_record

    m = dict(meta) if isinstance(meta, Mapping) else {}
    if isinstance(url, str) and url:
        m["url"] = url
    _check_source_url(m.get("url"))
    if not isinstance(path, str):
        path = None
    sha = sha256_hex(raw)  # once per page: read_page's check of the sidecar's digest is reused
    content_type = m.get("content_type") if isinstance(m.get("content_type"), str) else None
    stage = "decode"
    try:
        kind = detect_kind(path, content_type, raw)
        if isinstance(content, str):
            text = clean_text(content)
        else:
            text = decode_bytes(raw, declared=charset_of(content_type), kind=kind)
        stage = "parse"
        precheck(text, kind, limits)
        check_deadline()
        doc = parse_document(text, kind)
        check_deadline()
        check_document(doc, limits)
        stage = "normalize"
        return build_record(doc, url=m.get("url"), path=path, meta=m, sha256=sha, kind=kind)
    except (RejectedPage, ParseTimeout):
        raise
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "record"
        raise RejectedPage(f"invalid record ({where}: {first.get('msg')})", stage="validate") from exc
    except RecursionError as exc:
        raise RejectedPage("page nested too deeply to parse", stage=stage) from exc
    except MemoryError as exc:
        raise RejectedPage("page needs too much memory to parse", stage=stage) from exc
    except Exception as exc:  # noqa: BLE001 - a bug must cost one page, not the run; tests look for these
        raise RejectedPage(
            f"internal error: {type(exc).__name__}: {exc}", stage=stage, detail=_where(exc)
        ) from exc


#: Schemes a page's own URL may have; a "javascript:" or "data:" URL is script, not provenance.
SOURCE_SCHEMES = frozenset({"", "http", "https", "file"})


#: Prefixes of a source URL that is surely a web address (ASCII, without brackets): no urlsplit needed.
_WEB_PREFIXES = ("https://", "http://")


def _check_source_url(url: object) -> None:
    if not isinstance(url, str) or not url.strip():
        return
    if url.startswith(_WEB_PREFIXES) and url.isascii() and "[" not in url and "]" not in url:
        # urlsplit's scheme is http(s), and with an ASCII netloc without brackets it cannot raise
        return
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError as exc:
        raise RejectedPage(f"malformed source URL ({exc})", stage="read") from None
    if scheme not in SOURCE_SCHEMES:
        raise RejectedPage(f"source URL is not a web address ({scheme}:)", stage="read")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


def _one_line(exc: RejectedPage) -> RejectedPage:
    """The same refusal with its reason on one line of at most ``MAX_REASON`` characters."""
    reason = " ".join(str(exc.reason).split()) or "rejected"
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    if reason == exc.reason:
        return exc
    out = RejectedPage(reason, stage=exc.stage, detail=exc.detail)
    out.__traceback__ = exc.__traceback__
    return out
