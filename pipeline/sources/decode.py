"""Bytes to text: which front end a page needs, and which character set it is in.

Order of evidence for the charset: a byte-order mark, the charset the sidecar or HTTP
Content-Type declares, ``<meta charset>`` in the first 4 KiB of an HTML page, then UTF-8 and,
when the bytes are not valid UTF-8, cp1252 (so Windows "smart quotes" do not become mojibake).

Hostile bytes: binary files (known magic numbers, NUL bytes, or text that is mostly control or
undecodable characters) are refused with a reason; stray control characters (NUL included) are
removed from the text; only real text encodings are honoured when declared (not "base64",
"unicode_escape", "utf-7", ...); a ``<meta charset>`` naming UTF-16/32 on a page without a BOM
is read as UTF-8, as browsers do.
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

#: Leading bytes of common binary formats: PDF, PNG, GIF, JPEG, ZIP (docx, xlsx), gzip, ELF, zstd,
#: bzip2, 7z, RAR, OLE (doc, xls), WebP/WAV (RIFF), Ogg, MP3 (ID3), WOFF, SQLite.
_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"\x7fELF",
    b"\x28\xb5\x2f\xfd",
    b"BZh",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"\xd0\xcf\x11\xe0",
    b"RIFF",
    b"OggS",
    b"ID3",
    b"wOFF",
    b"wOF2",
    b"SQLite format 3\x00",
)
#: Encodings never honoured when declared: not text encodings, or ones that turn bytes into markup.
_REFUSED = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7", "undefined", "mbcs", "oem"}
)
#: C0 controls other than tab, newlines, vertical tab and form feed, plus DEL: removed from text.
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), 0x0E, *range(0x0F, 0x20), 0x7F])
_NOISE = re.compile("[\x00-\x08\x0e-\x1f\ufffd]")
_BINARY_SAMPLE = 65536
#: A text whose sample has more control or replacement characters than this share is binary.
_BINARY_SHARE = 0.05


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
    head = content[:2048]
    for bom, name in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :].decode(name, "ignore").encode("utf-8", "ignore")
            break
    return "html" if _HTML_SNIFF.match(head) else "text"


def _codec(name: str | None) -> str | None:
    """The Python codec for a declared charset, or None when it is unknown or not a text encoding."""
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip())
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    return info.name


#: The bytes of ``_CONTROLS`` and ``_NOISE`` in UTF-8, plus 0xEF (the lead byte of U+FFFD): a text whose
#: UTF-8 has none of them has nothing to clean (a few other characters start with 0xEF: false alarms
#: that just take the full check).
_SUSPECT_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F, 0xEF])


def _nothing_to_clean(text: str, utf8: bytes | None = None) -> bool:
    """True when ``text`` (whose UTF-8 is ``utf8``, if known) has no control or replacement character.

    Deleting bytes in C is ~25x cheaper than ``str.translate`` with a dict, and most pages are clean.
    """
    if utf8 is None:
        utf8 = text.encode("utf-8", "surrogatepass")
    return len(utf8.translate(None, _SUSPECT_BYTES)) == len(utf8)


def _clean_text(text: str, utf8: bytes | None = None) -> str:
    """Refuse text that is mostly binary noise; drop stray control characters from the rest."""
    if _nothing_to_clean(text, utf8):
        return text
    sample = text[:_BINARY_SAMPLE]
    if sample:
        noise = _NOISE.subn("", sample)[1]
        if noise > 8 and noise > _BINARY_SHARE * len(sample):
            raise RejectedPage("binary file, not a text or HTML page (control characters)", stage="decode")
    return text.translate(_CONTROLS)


_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")


def _mostly_utf8(content: bytes) -> str | None:
    """The UTF-8 reading of bytes that are not valid UTF-8, when it is still the better one: more
    well-formed multi-byte characters than broken sequences. None when cp1252 is the likelier."""
    text = content.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    good = _NON_ASCII.subn("", text)[1]
    return text if good > broken else None


def clean_text(text: str) -> str:
    """Text handed over already decoded gets the same care as bytes: lone surrogates replaced, binary
    noise refused, stray control characters dropped; raises RejectedPage (stage "decode")."""
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if not text.strip():
        raise RejectedPage("empty page (no text)", stage="decode")
    text = _clean_text(text)
    if not text.strip():
        raise RejectedPage("empty page (no text)", stage="decode")
    return text


def decode_bytes(content: bytes, *, declared: str | None = None, kind: Kind = "text") -> str:
    """Decode page bytes to text; raises RejectedPage (stage "decode") for binary content."""
    for bom, name in _BOMS:
        if content.startswith(bom):
            unmarked = _clean_text(content[len(bom) :].decode(name, errors="replace"))
            if not unmarked.strip():
                raise RejectedPage("empty page (no text)", stage="decode")
            return unmarked
    if not content.strip():
        raise RejectedPage("empty page (no text)", stage="decode")
    if content.startswith(_MAGIC):
        raise RejectedPage("binary file, not a text or HTML page", stage="decode")
    if content.count(b"\x00", 0, 8192) > 8:
        raise RejectedPage("binary file, not a text or HTML page (NUL bytes)", stage="decode")
    candidates: list[str] = []
    if c := _codec(declared):
        candidates.append(c)
    if kind == "html":
        m = _META_CHARSET.search(content, 0, 4096)
        if m and (c := _codec(m.group(1).decode("ascii", "ignore"))):
            # a page that could declare UTF-16/32 in ASCII is not in it (no BOM): browsers read UTF-8
            candidates.append("utf-8" if c.startswith(("utf-16", "utf-32", "utf_16", "utf_32")) else c)
    candidates += ["utf-8", "cp1252"]
    text: str | None = None
    utf8: bytes | None = None  # the text's UTF-8, when it is the page's own bytes
    for name in candidates:
        # a declared "iso-8859-1"/"ascii" is treated as cp1252, as browsers do
        if name in ("latin-1", "iso8859-1", "ascii"):
            name = "cp1252"
        if name == "cp1252" and (mostly := _mostly_utf8(content)) is not None:
            text = mostly  # UTF-8 with a few broken bytes: cp1252 would garble all of it
            break
        try:
            text = content.decode(name)
            if name == "utf-8":
                utf8 = content
            break
        except (UnicodeError, LookupError, ValueError):
            continue
    if text is None:
        text = content.decode("utf-8", errors="replace")
    text = _clean_text(text, utf8)
    if not text.strip():
        raise RejectedPage("empty page (no text)", stage="decode")
    return text
