"""Bytes to text: which front end a page needs, and which character set it is in.

Order of evidence for the charset: a byte-order mark, the charset the sidecar or HTTP
Content-Type declares, ``<meta charset>`` in the first 4 KiB of an HTML page, then UTF-8 and,
when the bytes are not valid UTF-8, cp1252 (so Windows "smart quotes" do not become mojibake).
"""

from __future__ import annotations

import codecs
import re

from pipeline.errors import RejectedPage

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_CT_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
_HTML_SNIFF = re.compile(rb"^\s*(?:<!doctype\s+html|<html|<head|<body|<meta|<div|<p[\s>]|<h[1-6]|<!--)", re.I)

Kind = str  # "html" | "text" | "markdown"


def charset_of(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, if any."""
    if not content_type:
        return None
    m = _CT_CHARSET.search(content_type)
    return m.group(1) if m else None


def detect_kind(path: str | None, content_type: str | None, content: bytes) -> Kind:
    """html, markdown or text: by file extension, then Content-Type, then a sniff of the bytes."""
    p = (path or "").lower()
    if p.endswith((".html", ".htm", ".xhtml")):
        return "html"
    if p.endswith((".md", ".markdown")):
        return "markdown"
    if p.endswith(".txt"):
        return "text"
    ct = (content_type or "").lower()
    if "html" in ct:
        return "html"
    if "markdown" in ct:
        return "markdown"
    if "text/plain" in ct:
        return "text"
    head = content[:2048].lstrip(b"\xef\xbb\xbf")
    return "html" if _HTML_SNIFF.match(head) else "text"


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip()).name
    except LookupError:
        return None


def decode_bytes(content: bytes, *, declared: str | None = None, kind: Kind = "text") -> str:
    """Decode page bytes to text; raises RejectedPage (stage "decode") for binary content."""
    for bom, name in _BOMS:
        if content.startswith(bom):
            return content[len(bom) :].decode(name, errors="replace")
    if not content.strip():
        raise RejectedPage("empty page (no text)", stage="decode")
    candidates: list[str] = []
    if c := _codec(declared):
        candidates.append(c)
    if kind == "html":
        m = _META_CHARSET.search(content[:4096])
        if m and (c := _codec(m.group(1).decode("ascii", "ignore"))):
            candidates.append(c)
    candidates += ["utf-8", "cp1252"]
    if b"\x00" in content[:8192] and content[:8192].count(b"\x00") > 8:
        raise RejectedPage("binary file, not a text or HTML page (NUL bytes)", stage="decode")
    if content.startswith((b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b")):
        raise RejectedPage("binary file, not a text or HTML page", stage="decode")
    for name in candidates:
        # a declared "iso-8859-1"/"ascii" is treated as cp1252, as browsers do
        if name in ("latin-1", "iso8859-1", "ascii"):
            name = "cp1252"
        try:
            return content.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    return content.decode("utf-8", errors="replace")
