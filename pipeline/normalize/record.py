"""Assemble a ProcedureRecord from a Document: code, sections, names, similar codes, typed fields.

The convenience fields (``summary``, ``indications``, ...) are views of ``sections``: a text key gets
the section's text plus its items as lines; a list key gets one string per item ("Label: text",
nested items flattened), or the paragraphs when the section has no list. Sections sharing a key
(a second "Summary") all contribute, in page order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from pipeline.errors import RejectedPage
from pipeline.normalize.codes import (
    CodeRef,
    canonical_system,
    from_url,
    is_valid,
    normalize_code,
    peek_code,
    resolve_code,
    strip_code_prefix,
    system_by_shape,
)
from pipeline.normalize.fields import extract_fields
from pipeline.normalize.names import extract_names
from pipeline.normalize.sections import SectionDraft, build_outline, heading_forms, iter_doc_items
from pipeline.normalize.vocabulary import Vocabulary, load_vocabulary
from pipeline.parse.document import Document, Heading, ListBlock, Paragraph, clean
from pipeline.parse.document import Item as DocItem
from pipeline.version import parser_version
from schemas.models import (
    LIST_SECTION_KEYS,
    TEXT_SECTION_KEYS,
    Item,
    ProcedureRecord,
    Section,
    SimilarCode,
    Source,
)


def diagnosis_headings(doc: Document, vocab: Vocabulary) -> list[str]:
    """The diagnosis-page headings ("Name of the Condition", Causes, Symptoms, ...) when they dominate
    the page, else an empty list. A stray "Complications:" on a procedure page does not count."""
    found: list[str] = []
    cond_keys: set[str] = set()
    proc_keys: set[str] = set()
    for block in doc.blocks:
        if not isinstance(block, Heading):
            continue
        _, text, norm = heading_forms(block.text)  # heading_text, and heading_norm of it
        pk = vocab.procedure.get(norm)  # vocab.key(text)
        ck = vocab.condition.get(norm) if pk is None else None  # vocab.condition_key(text)
        if ck:
            cond_keys.add(ck)
            if text not in found:
                found.append(text)
        elif pk is not None:
            proc_keys.add(pk)
    named = "name" in cond_keys and "name" not in proc_keys
    if named or (len(cond_keys) >= 2 and len(cond_keys) > len(proc_keys)):
        return found
    return []


def parse_when(value: Any) -> datetime | None:
    """A lenient ``fetched_at``: ISO 8601 (with Z), RFC 2822 (HTTP dates) or epoch seconds; else None."""
    dt: datetime | None = None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            secs = value / 1000 if value > 1e11 else value
            dt = datetime.fromtimestamp(secs, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        s = value.strip()
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            try:
                dt = parsedate_to_datetime(s)
            except (TypeError, ValueError, IndexError):
                return None
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


_SIMILAR_LINE = re.compile(
    r"^\s*(?:[-•*]\s*)?(?P<code>[A-Za-z0-9]{5,7})\b\s*[-:–—.)]?\s*(?P<title>.*)$", re.S
)


def _similar_from(text: str, href: str | None, page_system: str, page_url: str | None) -> SimilarCode | None:
    link_system, link_code, _ = from_url(href)
    m = _SIMILAR_LINE.match(clean(text))
    code = normalize_code(m.group("code")) if m else None
    title = clean(m.group("title")) if m else clean(text)
    if code is not None and not (system_by_shape(code) or (link_system and is_valid(link_system, code))):
        code, title = None, clean(text)
    if code is None and link_code:
        code = normalize_code(link_code, link_system)
    if code is None:
        return None
    if link_system and is_valid(link_system, code):
        system: str | None = link_system
    elif is_valid(page_system, code):
        system = page_system
    else:
        system = system_by_shape(code)
    return SimilarCode(code_system=system, code=code, title=title or None, url=link_url(href, page_url))


def link_url(href: str | None, page_url: str | None) -> str | None:
    """``href`` made absolute against the page URL, kept only when it is a web link: a ``javascript:``
    or ``data:`` link (script text) or a malformed one never reaches a record."""
    if not href or not href.strip():
        return None
    url = href.strip()
    try:
        if page_url:
            try:
                url = urljoin(page_url, url)
            except ValueError:  # a malformed page URL: keep the link as written
                pass
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https"):
        return url
    # a relative reference; RFC 3986 4.2: its first segment has no ":" ("htt<ps://x" is no web link)
    if not parts.scheme and not url.startswith("//") and ":" not in url.split("/", 1)[0]:
        return url
    return None


def similar_codes(drafts: list[SectionDraft], page_system: str, page_url: str | None) -> list[SimilarCode]:
    """ "63190 Laminectomy with ..." lines, items and links of the Similar Codes section(s)."""
    out: list[SimilarCode] = []
    seen: set[tuple[str | None, str]] = set()

    def add(sc: SimilarCode | None) -> None:
        if sc is not None and (sc.code_system, sc.code) not in seen:
            seen.add((sc.code_system, sc.code))
            out.append(sc)

    def walk(items: list[DocItem]) -> None:
        for it in iter_doc_items(items):
            text = f"{it.label}: {it.text}" if it.label else it.text
            add(_similar_from(text, it.href, page_system, page_url))

    for d in drafts:
        if d.key != "similar_codes":
            continue
        for block in d.blocks:
            if isinstance(block, Paragraph):
                lines = [ln for ln in block.text.split("\n") if ln.strip()]
                for i, line in enumerate(lines):
                    add(_similar_from(line, block.href if i == 0 else None, page_system, page_url))
            elif isinstance(block, ListBlock):
                walk(block.items)
    return out


def item_lines(items: list[Item], out: list[str] | None = None) -> list[str]:
    """One line per item, nested items flattened after their parent; "Label: text" when labelled.
    Appended to ``out`` when given."""
    if out is None:
        out = []
    for it in items:
        if it.label:
            out.append(f"{it.label}: {it.text}" if it.text else f"{it.label}:")
        elif it.text:
            out.append(it.text)
        if it.items:
            item_lines(it.items, out)
    return out


def section_as_text(section: Section) -> str:
    parts: list[str] = [section.text] if section.text else []
    if section.items:
        item_lines(section.items, parts)
    for sub in section.subsections:
        parts.append(f"{sub.heading}:")
        if sub.text:
            parts.append(sub.text)
        item_lines(sub.items, parts)
    return "\n".join(parts)


def section_as_list(section: Section) -> list[str]:
    values = item_lines(section.items)
    for sub in section.subsections:
        item_lines(sub.items, values)
    if values:
        return values
    paras = [p for p in (section.text or "").split("\n\n") if p]
    for sub in section.subsections:
        paras.extend(f"{sub.heading}: {p}" for p in (sub.text or "").split("\n\n") if p)
    return paras


def convenience_fields(sections: list[Section]) -> dict[str, Any]:
    """``summary``/``purpose``/... (text) and ``indications``/``risks``/... (lists) from the sections."""
    by_key: dict[str, list[Section]] = {}
    for s in sections:
        by_key.setdefault(s.key, []).append(s)
    out: dict[str, Any] = {}
    for key in TEXT_SECTION_KEYS:
        found = by_key.get(key)
        if found is None:  # most keys: no section, no comprehension
            out[key] = None
            continue
        texts = [t for s in found if (t := section_as_text(s))]
        out[key] = "\n\n".join(texts) if texts else None
    for key in LIST_SECTION_KEYS:
        found = by_key.get(key)
        out[key] = [v for s in found for v in section_as_list(s)] if found else []
    return out


def _str_or_none(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def build_record(
    doc: Document,
    *,
    url: str | None,
    path: str | None,
    meta: Mapping[str, Any],
    sha256: str,
    kind: str,
) -> ProcedureRecord:
    """The validated record of one parsed page, or ``RejectedPage(reason, stage="normalize")``.

    ``meta`` is the sidecar (``code_system``, ``code``, ``fetched_at``, ``content_type``, ``url``);
    ``kind`` is the front end that parsed the page (html, text, markdown), used in messages.
    """
    vocab = load_vocabulary()
    url = url or _str_or_none(meta.get("url"))
    diagnosis = diagnosis_headings(doc, vocab)
    if diagnosis:
        raise RejectedPage(
            f"not a procedure page (diagnosis page: {', '.join(diagnosis[:3])})",
            stage="normalize",
            detail=peek_code(doc, url=url, path=path, meta=meta),
        )
    ref: CodeRef = resolve_code(doc, url=url, path=path, meta=meta)
    outline = build_outline(doc, vocab)
    sections = outline.sections
    title = strip_code_prefix(doc.title, ref.code)
    names = extract_names(sections, title, ref.code)
    typed = extract_fields(sections)
    source = Source(
        url=url,
        path=path,
        sha256=sha256,
        fetched_at=parse_when(meta.get("fetched_at")),
        content_type=_str_or_none(meta.get("content_type")),
    )
    return ProcedureRecord(
        record_id=f"{ref.code_system}:{ref.code}",
        code_system=ref.code_system,
        code=ref.code,
        title=title,
        procedure_name=names.procedure_name,
        common_names=names.common_names,
        technical_term=names.technical_term,
        preamble=outline.preamble,
        sections=sections,
        **convenience_fields(sections),
        similar_codes=similar_codes(outline.drafts, ref.code_system, url),
        duration_minutes_min=typed.duration_minutes_min,
        duration_minutes_max=typed.duration_minutes_max,
        hospital_stay_days_min=typed.hospital_stay_days_min,
        hospital_stay_days_max=typed.hospital_stay_days_max,
        recovery_weeks_min=typed.recovery_weeks_min,
        recovery_weeks_max=typed.recovery_weeks_max,
        fasting_hours_min=typed.fasting_hours_min,
        fasting_hours_max=typed.fasting_hours_max,
        anesthesia_types=typed.anesthesia_types,
        care_settings=typed.care_settings,
        source=source,
        parser_version=parser_version(),
    )


__all__ = ["build_record", "canonical_system", "convenience_fields", "diagnosis_headings", "parse_when"]
