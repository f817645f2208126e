"""The one-page Python API: bytes in, a validated ProcedureRecord out (or RejectedPage)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from pipeline.errors import RejectedPage
from pipeline.parse import parse_document
from pipeline.sources.decode import charset_of, decode_bytes, detect_kind
from schemas import ProcedureRecord


def parse_page(
    content: bytes | str,
    *,
    url: str | None = None,
    path: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> ProcedureRecord:
    """Parse one page into a validated record.

    ``meta`` takes the sidecar fields (``url``, ``code_system``, ``code``, ``fetched_at``,
    ``content_type``, ...); ``url`` and ``path`` override and complete it. Raises
    ``RejectedPage`` with a one-line reason when the page cannot become a record.
    """
    from pipeline.normalize import build_record

    m = dict(meta or {})
    if url:
        m["url"] = url
    raw = content.encode("utf-8") if isinstance(content, str) else content
    sha = hashlib.sha256(raw).hexdigest()
    content_type = m.get("content_type")
    kind = detect_kind(path, content_type, raw)
    text = content if isinstance(content, str) else decode_bytes(raw, declared=charset_of(content_type), kind=kind)
    try:
        doc = parse_document(text, kind)
    except RejectedPage:
        raise
    except (ValueError, RecursionError) as exc:
        raise RejectedPage(f"cannot parse {kind} page: {exc}", stage="parse") from exc
    try:
        return build_record(doc, url=m.get("url"), path=path, meta=m, sha256=sha, kind=kind)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "record"
        raise RejectedPage(f"invalid record ({where}: {first.get('msg')})", stage="validate") from exc
