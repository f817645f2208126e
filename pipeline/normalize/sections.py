"""Document blocks -> preamble + top-level sections with subsections, in page order.

Rules (nothing on the page is dropped; every word lands in the preamble or a section):

- A heading in the vocabulary opens a top-level section with its canonical key. A *template* heading
  (``[template]`` in vocabulary.toml: the page template's own headings) always does; any other alias
  ("Anesthesia:", "Tools and Equipment:", "Goals") does only when it is a heading in its own right, not
  a sub-heading of the current section: not deeper than the section's heading, not a "Label:" line
  under a heading written without a colon, and, under a template heading, a real markup heading (h1-h6,
  dt, summary) rather than a text or bold line. As a sub-heading it becomes a subsection.
- A heading outside the vocabulary becomes a subsection when it sits under a section at a deeper
  level or in a sub-heading form (bold, "Label:"); otherwise it opens a section with key ``other``.
- Paragraphs become ``text`` (joined by a blank line), lists become ``items`` (``Item.label`` kept).
  A bare "Label:" bullet is no item: it becomes a subsection holding its children or, in a flattened
  list, the sibling bullets after it up to the next bare label.
- Blocks before the first heading become the preamble (title, code line, chrome and breadcrumb
  excepted: they are recorded elsewhere or are site furniture).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from pipeline.normalize.vocabulary import DEFAULT_PATH, Vocabulary, heading_norm, load_vocabulary
from pipeline.parse.document import (
    BREADCRUMB,
    CHROME_LINES,
    CODE_LINE,
    Block,
    Document,
    Heading,
    ListBlock,
    Paragraph,
    clean,
)
from pipeline.parse.document import Item as DocItem
from schemas import Item, Section, Subsection

#: Heading forms that are sub-headings by nature (a whole-bold paragraph, a short "Label:" line).
SUB_KINDS = frozenset({"bold", "label"})
#: Heading forms that come from real markup (h1-h6, dt, summary) rather than a line of text or bold.
MARKUP_KINDS = frozenset({"h", "dt", "summary"})
_BARE_MAX_WORDS = 6


@lru_cache(maxsize=4)
def _template_headings(path: str) -> frozenset[str]:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return frozenset(heading_norm(h) for h in data.get("template", {}).get("headings", []))


def template_headings() -> frozenset[str]:
    """Normalized headings of the page template (they open a section wherever they appear)."""
    return _template_headings(str(os.environ.get("PROCPIPE_VOCABULARY") or DEFAULT_PATH))


def heading_text(text: str) -> str:
    """A heading as written, without its trailing colon."""
    return clean(text).rstrip(":").rstrip()


@lru_cache(maxsize=8192)
def heading_forms(raw: str) -> tuple[str, str, str]:
    """(cleaned, ``heading_text``, ``heading_norm``) of a heading as the Document holds it.

    Cached: page templates repeat the same headings on every page. ``heading_norm`` of the raw text
    and of ``heading_text`` are equal (cleaning and the trailing colon touch only non-word characters).
    """
    cleaned = clean(raw)
    text = cleaned.rstrip(":").rstrip()
    return cleaned, text, heading_norm(text)


_M = TypeVar("_M", bound=BaseModel)
_setattr = object.__setattr__


def _constructor_safe(cls: type[BaseModel]) -> bool:
    return (
        not cls.__pydantic_root_model__
        and cls.__pydantic_post_init__ is None
        and not cls.__private_attributes__
        and cls.model_config.get("extra") != "allow"
    )


_FAST: dict[type[BaseModel], bool] = {cls: _constructor_safe(cls) for cls in (Item, Subsection, Section)}


def construct(cls: type[_M], values: dict[str, Any]) -> _M:
    """``cls.model_construct(**values)`` for a dict holding every field: the instance without validation.

    The outline's items, subsections and sections are built from cleaned strings and from each other,
    so their types hold by construction; validating each of them again (pydantic ``__init__``) cost
    a third of ``build_record``. The record itself is still validated (code, ranges, top-level fields).
    This is ``model_construct``'s own assignment minus its per-field alias and default handling, used
    only for models without post-init, private attributes or extras (``model_construct`` otherwise).
    """
    if not _FAST.get(cls, False):
        return cls.model_construct(**values)
    m = cls.__new__(cls)
    _setattr(m, "__dict__", values)
    _setattr(m, "__pydantic_fields_set__", set(values))
    _setattr(m, "__pydantic_extra__", None)
    _setattr(m, "__pydantic_private__", None)
    return m


def _new_item(values: dict[str, Any]) -> Item:
    """``construct(Item, values)`` without the per-call checks (the outline builds many items)."""
    if not _FAST_ITEM:
        return Item.model_construct(**values)
    m = _new_model(Item)
    _setattr(m, "__dict__", values)
    _setattr(m, "__pydantic_fields_set__", {"label", "text", "items"})
    _setattr(m, "__pydantic_extra__", None)
    _setattr(m, "__pydantic_private__", None)
    return m


_FAST_ITEM = _FAST[Item] and set(Item.model_fields) == {"label", "text", "items"}
_new_model = BaseModel.__new__


def is_bare_label(item: DocItem) -> bool:
    """A "Label:" bullet with nothing after the colon: a sub-heading, not an item (judge's rule too)."""
    text = clean(item.text)
    if item.label and not text:
        return True
    return item.label is None and text.endswith(":") and len(text.split()) <= _BARE_MAX_WORDS


def _bare_heading(item: DocItem) -> str:
    return clean(item.label) if item.label else clean(item.text).rstrip(":").rstrip()


@dataclass
class _Part:
    """A section or subsection being filled."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)


@dataclass
class _Sub(_Part):
    pass


@dataclass
class SectionDraft(_Part):
    """A top-level section under construction; ``blocks`` keeps the raw blocks (links for Similar Codes)."""

    key: str = "other"
    level: int = 2
    label_form: bool = False
    template: bool = False
    subsections: list[_Sub] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def to_section(self) -> Section:
        subsections = [
            construct(
                Subsection,
                {"heading": s.heading, "text": "\n\n".join(s.paragraphs) or None, "items": list(s.items)},
            )
            for s in self.subsections
        ]
        return construct(
            Section,
            {
                "key": self.key,
                "heading": self.heading,
                "text": "\n\n".join(self.paragraphs) or None,
                "items": list(self.items),
                "subsections": subsections,
            },
        )


@dataclass
class Outline:
    preamble: list[str]
    drafts: list[SectionDraft]

    @property
    def sections(self) -> list[Section]:
        return [d.to_section() for d in self.drafts]


#: Deepest item nesting kept; deeper items are flattened onto this level (keeps every consumer's
#: recursion bounded whatever a front end produces).
MAX_ITEM_DEPTH = 12


def iter_doc_items(items: list[DocItem]) -> Iterator[DocItem]:
    """Every item and nested child in page order, without recursion."""
    stack: list[Iterator[DocItem]] = [iter(items)]
    while stack:
        it = next(stack[-1], None)
        if it is None:
            stack.pop()
            continue
        yield it
        if it.children:
            stack.append(iter(it.children))


def _convert(
    items: list[DocItem], promoted: list[_Sub], depth: int = 0, tidy: bool = False
) -> tuple[list[Item], _Sub | None]:
    """Document items -> record items. Bare labels become subsections (appended to ``promoted``);
    returns the items and the flattened subsection still open at the end of the list, if any.
    ``tidy``: the texts and labels are already ``clean()`` (``Document.clean_texts``)."""
    if depth >= MAX_ITEM_DEPTH:
        items = [DocItem(i.text, i.label) for i in iter_doc_items(items)]
    out: list[Item] = []
    open_sub: _Sub | None = None
    fast = _FAST_ITEM
    for it in items:
        text = it.text if tidy else clean(it.text)
        raw_label = it.label
        # is_bare_label(it) and _bare_heading(it), on the text cleaned once
        if (raw_label and not text) or (
            raw_label is None and text.endswith(":") and len(text.split()) <= _BARE_MAX_WORDS
        ):
            sub = _Sub(clean(raw_label) if raw_label else text.rstrip(":").rstrip(), [], [])
            promoted.append(sub)
            if it.children:
                sub.items, _ = _convert(it.children, promoted, depth + 1, tidy)
                open_sub = None
            else:
                open_sub = sub
            continue
        children = _convert(it.children, promoted, depth + 1, tidy)[0] if it.children else []
        label = (raw_label if tidy else clean(raw_label)) if raw_label else None
        if not text and not label and not children:
            continue
        if fast:  # _new_item, inline: the outline builds many items
            item = _new_model(Item)
            _setattr(item, "__dict__", {"label": label or None, "text": text, "items": children})
            _setattr(item, "__pydantic_fields_set__", {"label", "text", "items"})
            _setattr(item, "__pydantic_extra__", None)
            _setattr(item, "__pydantic_private__", None)
        else:
            item = Item.model_construct(label=label or None, text=text, items=children)
        (open_sub.items if open_sub is not None else out).append(item)
    return out, open_sub


def _flat_lines(items: list[DocItem]) -> list[str]:
    lines: list[str] = []
    for it in iter_doc_items(items):
        text = clean(it.text)
        if it.label:
            lines.append(f"{clean(it.label)}: {text}".rstrip())
        elif text:
            lines.append(text)
    return lines


def _is_furniture(t: str, skip: set[str]) -> bool:
    """Whether a cleaned text before the first heading is site furniture (title, code line, chrome,
    breadcrumb): recorded elsewhere or dropped, never part of the preamble."""
    low = t.lower()
    return (
        not t or low in skip or low in CHROME_LINES or bool(CODE_LINE.match(t)) or bool(BREADCRUMB.match(t))
    )


def build_outline(doc: Document, vocab: Vocabulary | None = None) -> Outline:
    """Walk ``doc.blocks`` into a preamble and section drafts (see the module docstring for the rules).

    One loop with the builder's state in local variables: a page's outline is built once, block by
    block, and per-block method calls and attribute reads were a fifth of its cost."""
    procedure = (vocab or load_vocabulary()).procedure
    template_set = template_headings()
    skip = {clean(t).lower() for t in (doc.title, doc.code_line) if t}
    tidy = doc.clean_texts
    preamble: list[str] = []
    drafts: list[SectionDraft] = []
    cur: SectionDraft | None = None  # drafts[-1]
    sub: _Sub | None = None  # the open subsection of cur, if any
    for block in doc.blocks:
        if isinstance(block, Heading):
            cleaned, text, norm = heading_forms(block.text)
            if not text or (cur is None and _is_furniture(cleaned, skip)):
                continue
            key = procedure.get(norm)
            kind = block.kind
            level = block.level
            label_form = kind == "label" or cleaned.endswith(":")
            template = norm in template_set
            if key is not None and (
                cur is None
                or template
                or (
                    # not a sub-heading of cur: not deeper, not a "Label:" under a colon-less heading;
                    # under a template heading, a looser alias ("Goals", "Anesthesia") written as a
                    # text or bold line is the page's own sub-heading: only real markup headings count
                    not (level > cur.level or (label_form and not cur.label_form))
                    and (not cur.template or kind in MARKUP_KINDS)
                )
            ):
                cur = SectionDraft(text, [], [], key, level, label_form, template, [], [])
                drafts.append(cur)
                sub = None
            elif cur is not None and (
                level > cur.level
                # a bold line is a sub-heading, except beside sections whose own headings are bold lines
                or (kind in SUB_KINDS and not (kind == "bold" and level <= cur.level))
                or key is not None
                or (label_form and not cur.label_form)
            ):
                sub = _Sub(text, [], [])
                cur.subsections.append(sub)
                cur.blocks.append(block)
            else:
                cur = SectionDraft(text, [], [], "other", level, label_form, template, [], [])
                drafts.append(cur)
                sub = None
        elif isinstance(block, Paragraph):
            text = block.text if tidy else clean(block.text)
            if cur is None:
                if not _is_furniture(text, skip):
                    preamble.append(text)
                continue
            if text:
                (sub if sub is not None else cur).paragraphs.append(text)
            cur.blocks.append(block)
        elif isinstance(block, ListBlock):
            if cur is None:
                lines = _flat_lines(block.items)  # cleaned lines
                preamble.extend(line for line in lines if not _is_furniture(line, skip))
                continue
            promoted: list[_Sub] = []
            items, open_sub = _convert(block.items, promoted, 0, tidy)
            (sub if sub is not None else cur).items.extend(items)
            if promoted:
                cur.subsections.extend(promoted)
            if open_sub is not None:
                sub = open_sub
            cur.blocks.append(block)
    return Outline(preamble, drafts)


def build_sections(doc: Document, vocab: Vocabulary | None = None) -> tuple[list[str], list[Section]]:
    """(preamble, sections) of a Document."""
    outline = build_outline(doc, vocab)
    return outline.preamble, outline.sections


def count_items(items: list[Item]) -> int:
    """Items including nested children: the judge's count."""
    return sum(1 + count_items(i.items) for i in items)


def section_item_count(section: Section) -> int:
    return count_items(section.items) + sum(count_items(s.items) for s in section.subsections)
