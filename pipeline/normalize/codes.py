"""Which code system and code a page is about, and why we believe it.

Evidence is taken in a fixed order, first one wins: the sidecar (``code_system``/``code``), the URL
(``/code/cpt4/63185-slug``, ``/code/hcpcs/A4253``), the file path (``<source>/<system>/<code>[-slug].ext``
or a stem like ``genhealth_cpt4_63185``), then the page itself (the code-system line, a code prefixing
the title, the breadcrumb, "(G9920)" or "(HCPCS Code: A4255)" after a name, "CPT code 43202" in the
text). System and code may come from different places (a sidecar system, a URL code); a code whose
system nobody states is assigned by its shape. Codes are upper-cased and checked against
``schemas.CODE_PATTERNS``; every failure is a ``RejectedPage`` naming what was wrong and where it
came from.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from pipeline.errors import RejectedPage
from pipeline.normalize.sections import iter_doc_items
from pipeline.parse.document import BREADCRUMB, Document, Heading, ListBlock, Paragraph, clean
from schemas import CODE_PATTERNS

#: Diagnosis code systems: a page coded in one of them is not a procedure page.
DIAGNOSIS_SYSTEMS = frozenset({"icd10cm"})

_SYSTEM_ALIASES = {
    "cpt": "cpt",
    "cpt4": "cpt",
    "cptiv": "cpt",
    "hcpcs": "hcpcs",
    "hcpcs2": "hcpcs",
    "hcpcsii": "hcpcs",
    "hcpcslevel2": "hcpcs",
    "hcpcslevelii": "hcpcs",
    "icd10pcs": "icd10pcs",
    "icd10cm": "icd10cm",
    "cdt": "cdt",
}
#: A code's shape when nobody names its system (checked in this order: D1234 is a CDT code).
_SHAPE_ORDER = ("cdt", "hcpcs", "cpt", "icd10pcs")
_ICD10CM = re.compile(r"^[A-TV-Z]\d[0-9A-Z](?:\.?[0-9A-Z]{1,4})?$")

_SYSTEM_WORD = r"(?:CPT\s*®?\s*4?|HCPCS(?:\s+Level\s+(?:II|2))?|CDT|ICD-?\s?10-?\s?PCS)"
#: "(G9920)", "(HCPCS Code: A4255)", "(HCPCS K0901)", "(L1844)"
_PAREN_CODE = re.compile(
    rf"\(\s*(?:(?P<sys>{_SYSTEM_WORD})\s*(?:code)?\s*[:#]?\s*)?(?P<code>[A-Z0-9]{{5,7}})\s*\)", re.I
)
#: "CPT® Code 43202", "HCPCS code J3304", "CPT4 code: 63185"
_MENTION = re.compile(rf"\b(?P<sys>{_SYSTEM_WORD})\s*codes?\s*[:#]?\s*(?P<code>[A-Z0-9]{{5,7}})\b", re.I)
_TITLE_PREFIX = re.compile(r"^(?P<code>[A-Z0-9]{5,7})\s*[-:–—]?\s+\S")
_LEAD_TOKEN = re.compile(r"^([A-Za-z0-9]+)")
_LEAD_TOKEN_DOTTED = re.compile(r"^([A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?)")


@dataclass(frozen=True)
class CodeRef:
    """The resolved code: canonical system, normalized code, and where each came from."""

    code_system: str
    code: str
    system_origin: str
    code_origin: str


class _Evidence(NamedTuple):
    """One source's say (a named tuple: several are made for every page, and a frozen dataclass's
    ``__init__`` costs four ``object.__setattr__`` calls)."""

    origin: str  # "sidecar", "URL", "file path", "page"
    system: str | None = None
    code: str | None = None
    raw_system: str | None = None  # as written, for error messages


_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_CODES_SUFFIX = re.compile(r"codes?$")


def canonical_system(name: Any) -> str | None:
    """Canonical system of "CPT4 code", "CPT®", "cpt4", "HCPCS Level II", "ICD-10-PCS", ...; else None."""
    if not isinstance(name, str):
        return None
    return _canonical_system(name)


@lru_cache(maxsize=4096)
def _canonical_system(name: str) -> str | None:
    """Cached: the same system names and URL path segments recur on every page."""
    n = _NOT_ALNUM.sub("", name.lower())
    n = _CODES_SUFFIX.sub("", n)
    return _SYSTEM_ALIASES.get(n)


def normalize_code(code: Any, system: str | None = None) -> str:
    """Upper-cased, trimmed code text; an integer CPT code gets its leading zeros back."""
    if isinstance(code, bool):
        return str(code)
    if isinstance(code, int):
        return str(code).zfill(5) if system == "cpt" else str(code)
    # NFKC: full-width "６３１８５" is 63185; other non-ASCII digits stay and fail is_valid
    # every whitespace character dropped: str.split() splits on what regex \s matches (str.isspace)
    text = "".join(unicodedata.normalize("NFKC", str(code)).split()).upper()
    if system in ("icd10cm", "icd10pcs"):
        text = text.replace(".", "")
    return text


def is_valid(system: str, code: str) -> bool:
    pattern = CODE_PATTERNS.get(system)
    # the patterns' \d also matches Arabic-Indic and other digits: a code is ASCII or invalid
    return bool(pattern and code.isascii() and pattern.match(code))


def system_by_shape(code: str) -> str | None:
    """The procedure code system a code's shape belongs to (D1234 -> cdt), or None."""
    if not code.isascii():
        return None
    for system in _SHAPE_ORDER:
        if CODE_PATTERNS[system].match(code):
            return system
    return None


def _looks_like_code(token: str) -> bool:
    return any(ch.isdigit() for ch in token) and 4 <= len(token.replace(".", "")) <= 8


def from_url(url: str | None) -> tuple[str | None, str | None, str | None]:
    """(system, code, system as written) from a code page URL, with or without a slug or scheme."""
    if not url or not isinstance(url, str):
        return None, None, None
    return _from_url(url)


@lru_cache(maxsize=4096)
def _from_url(url: str) -> tuple[str | None, str | None, str | None]:
    """Cached: the same code links (Similar Codes) recur across pages."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. "http://[::1/...": a malformed host is no evidence, not a crash
        return None, None, None
    path = parts.path if (parts.scheme or parts.netloc) else url.strip().split("?", 1)[0]
    segments = [unquote(s) for s in path.split("/") if s]
    for i, seg in enumerate(segments):
        system = canonical_system(seg)
        if not system:
            continue
        rest = segments[i + 1 :]
        if rest and rest[0].lower() in ("code", "codes"):
            rest = rest[1:]
        code = _lead_code(rest[0], system) if rest else None
        return system, code, seg
    return None, None, None


def _lead_code(segment: str, system: str | None) -> str | None:
    lead = _LEAD_TOKEN_DOTTED if system == "icd10cm" else _LEAD_TOKEN
    m = lead.match(segment)
    if not m or not _looks_like_code(m.group(1)):
        return None
    return m.group(1)


def from_path(path: str | None) -> tuple[str | None, str | None, str | None]:
    """(system, code, system as written) from ``<system>/<code>[-slug].ext`` or ``site_cpt4_63185.ext``."""
    if not path or not isinstance(path, str):
        return None, None, None
    p = PurePath(path.replace("\\", "/"))
    stem = p.name.split(".", 1)[0] if not p.suffix else p.stem
    parent = p.parent.name
    system = canonical_system(parent)
    if system:
        return system, _lead_code(stem, system), parent
    tokens = [t for t in re.split(r"[_\s]+", stem) if t]
    for i, tok in enumerate(tokens[:-1]):
        system = canonical_system(tok)
        if system:
            return system, _lead_code(tokens[i + 1], system), tok
    return None, None, None


def _page_texts(doc: Document) -> Iterable[str]:
    """Every text of the page in order (headings, paragraphs, items with their labels)."""

    for block in doc.blocks:
        if isinstance(block, (Heading, Paragraph)):
            yield block.text
        elif isinstance(block, ListBlock):
            for it in iter_doc_items(block.items):
                yield f"{it.label}: {it.text}" if it.label else it.text


def _name_block_texts(doc: Document) -> list[str]:
    """Texts before the first heading and under the first (name) heading: where "(G9920)" lives."""
    out: list[str] = []
    headings = 0
    for block in doc.blocks:
        if isinstance(block, Heading):
            headings += 1
            if headings > 1:
                break
            continue
        if isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, ListBlock):
            stack = list(block.items)
            while stack:
                it = stack.pop(0)
                out.append(f"{it.label}: {it.text}" if it.label else it.text)
                stack[0:0] = it.children
    return out


def _breadcrumb(doc: Document) -> str | None:
    crumb = doc.meta.get("breadcrumb")
    if crumb and BREADCRUMB.match(clean(crumb)):
        return clean(crumb)
    for block in doc.blocks[:3]:
        if isinstance(block, Paragraph) and BREADCRUMB.match(clean(block.text)):
            return clean(block.text)
    return None


def from_page(doc: Document) -> tuple[str | None, str | None, str | None]:
    """(system, code, system as written) from the page's own text."""
    system_raw = doc.code_line
    system = canonical_system(doc.code_line) if doc.code_line else None
    crumb = _breadcrumb(doc)
    crumb_code = None
    if crumb:
        parts = [clean(p) for p in crumb.split("/")]
        if len(parts) >= 2 and system is None and canonical_system(parts[1]):
            system, system_raw = canonical_system(parts[1]), parts[1]
        if len(parts) >= 3 and _looks_like_code(parts[-1]):
            crumb_code = parts[-1]

    def fits(code: str) -> bool:
        c = normalize_code(code, system)
        return is_valid(system, c) if system else system_by_shape(c) is not None

    title = clean(doc.title or "")
    m = _TITLE_PREFIX.match(title)
    if m and fits(m.group("code")):
        return system, m.group("code"), system_raw
    if crumb_code:
        return system, crumb_code, system_raw
    for text in _name_block_texts(doc):
        if "(" not in text:  # every _PAREN_CODE match starts with one
            continue
        for pm in _PAREN_CODE.finditer(text):
            named = canonical_system(pm.group("sys")) if pm.group("sys") else None
            if named or fits(pm.group("code")):
                return system or named, pm.group("code"), system_raw or pm.group("sys")
    for text in _page_texts(doc):
        if not _may_mention(text):
            continue
        for mm in _MENTION.finditer(text):
            named = canonical_system(mm.group("sys"))
            code = mm.group("code")
            if named and is_valid(named, normalize_code(code, named)):
                return system or named, code, system_raw or mm.group("sys")
    return system, None, system_raw


def _evidence(
    doc: Document, url: str | None, path: str | None, meta: Mapping[str, Any]
) -> Iterator[_Evidence]:
    """Evidence in order of precedence, computed lazily (the page is read only when needed)."""
    side_sys_raw = meta.get("code_system")
    side_sys = canonical_system(side_sys_raw)
    if side_sys_raw not in (None, "") and side_sys is None:
        raise RejectedPage(f"unknown code system {side_sys_raw!r} (from sidecar)", stage="normalize")
    side_code = meta.get("code")
    yield _Evidence(
        "sidecar",
        side_sys,
        normalize_code(side_code, side_sys) if side_code not in (None, "") else None,
        str(side_sys_raw) if side_sys_raw else None,
    )
    url = url if isinstance(url, str) else meta.get("url") if isinstance(meta.get("url"), str) else None
    for step in range(4):  # the URL, the file path, the page, the page's canonical URL
        if step == 0:
            origin = "URL"
            system, code, raw = from_url(url)
        elif step == 1:
            origin = "file path"
            system, code, raw = from_path(path)
        elif step == 2:
            origin = "page"
            system, code, raw = from_page(doc)
        else:
            origin = "page"
            system, code, raw = from_url(doc.meta.get("canonical") or doc.meta.get("canonical_url"))
        yield _Evidence(origin, system, normalize_code(code, system) if code else None, raw)


def resolve_code(doc: Document, *, url: str | None, path: str | None, meta: Mapping[str, Any]) -> CodeRef:
    """The page's code system and code, or ``RejectedPage`` saying why there is none.

    Raises with "no procedure code found (...)", "invalid <system> code '<code>' (from <origin>)",
    or "not a procedure page (ICD-10-CM diagnosis code <code>)".
    """
    code_ev: _Evidence | None = None
    system_ev: _Evidence | None = None
    for ev in _evidence(doc, url, path, meta):
        if system_ev is None and ev.system:
            system_ev = ev
        if code_ev is None and ev.code:
            code_ev = ev
        if code_ev is not None and system_ev is not None:
            break
    if code_ev is None or code_ev.code is None:
        if system_ev is not None and system_ev.system in DIAGNOSIS_SYSTEMS:
            raise RejectedPage("not a procedure page (ICD-10-CM diagnosis page)", stage="normalize")
        raise RejectedPage(
            "no procedure code found (not in sidecar, URL, file path or page)", stage="normalize"
        )
    code = code_ev.code
    if code_ev.system:
        system, system_origin = code_ev.system, code_ev.origin
    elif system_ev is not None and system_ev.system:
        system, system_origin = system_ev.system, system_ev.origin
    else:
        shaped = system_by_shape(code)
        if shaped is None:
            if _ICD10CM.match(code):
                raise RejectedPage(
                    f"not a procedure page (ICD-10-CM diagnosis code {code})", stage="normalize"
                )
            raise RejectedPage(
                f"code {code!r} (from {code_ev.origin}) matches no known code system", stage="normalize"
            )
        system, system_origin = shaped, "code shape"
    if system in DIAGNOSIS_SYSTEMS:
        raise RejectedPage(
            f"not a procedure page (ICD-10-CM diagnosis code {code.replace('.', '')})", stage="normalize"
        )
    code = normalize_code(code, system)
    if not is_valid(system, code):
        raise RejectedPage(f"invalid {system} code {code!r} (from {code_ev.origin})", stage="normalize")
    return CodeRef(system, code, system_origin, code_ev.origin)


def peek_code(doc: Document, *, url: str | None, path: str | None, meta: Mapping[str, Any]) -> str | None:
    """ "system:code" of the first code evidence, unvalidated (for the detail of a reject), or None."""
    try:
        evidence = list(_evidence(doc, url, path, meta))
    except RejectedPage:
        return None
    code_ev = next((e for e in evidence if e.code), None)
    if code_ev is None:
        return None
    system = code_ev.system or next((e.system for e in evidence if e.system), None) or "unknown"
    return f"{system}:{code_ev.code}"


def strip_code_prefix(title: str | None, code: str) -> str | None:
    """The title without a leading copy of the code ("A4253 Blood glucose ..." -> "Blood glucose ...")."""
    if not title:
        return None
    t = clean(title)
    if t.upper().startswith(code.upper()) and (len(t) == len(code) or not t[len(code)].isalnum()):
        t = t[len(code) :].lstrip(" -:–—")
    return t or None


def _may_mention(text: str) -> bool:
    """False only when ``_MENTION`` cannot match: every match holds "code" in some case (none of its
    letters has a non-ASCII case variant in ``re``), and scanning long page texts with the
    case-insensitive pattern is slow."""
    return "code" in text.lower()


def code_mentions(text: str) -> Iterable[re.Match[str]]:
    """Parenthesized or "<system> code X" mentions of a code in a text (for stripping them from names)."""
    if "(" in text:
        yield from _PAREN_CODE.finditer(text)
    if _may_mention(text):
        yield from _MENTION.finditer(text)
