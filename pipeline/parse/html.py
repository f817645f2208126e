"""HTML front end: a procedure page's markup -> Document (see ``pipeline.parse.document``).

The page is parsed with BeautifulSoup on lxml. When the page has a ``<main>``/``<article>``
content region, lxml's C parser cuts that region (and ``<title>``, ``<link>``) out of the page
first and BeautifulSoup parses only that, so it never handles the site chrome around it. One
iterative pass over the tree (an explicit stack, so 50,000 nested divs cannot overflow anything)
feeds start/data/end events to ``_Builder``, which turns them into blocks the way a reader sees
the page:

- headings: ``h1``-``h6`` (level n), ``dt`` and ``summary`` (level 2), a paragraph whose whole
  text is bold (level 7, or 8 when it ends with ":"), a short plain line equal to a known
  heading (level 2, kind "line") or a short "Label:" line (level 8);
- lists: ``ul``/``ol`` with nested child items, and paragraphs or ``<br>`` lines written with
  "•"/"-" bullets or "1." numbers (consecutive numbered paragraphs make ONE ordered list);
- chrome (nav, header and footer outside the content, script, style, forms, asides, cookie
  banners, ...) never becomes a block; a breadcrumb goes to ``meta["breadcrumb"]``.

The builder only sees events, so the same code also runs straight off lxml's parser
(``engine="lxml"``: no tree at all, several times faster); both engines give identical
Documents for pages with a content region and are tested to.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.builder._lxml import LXMLTreeBuilder
from bs4.element import PreformattedString
from lxml import etree

from pipeline.errors import RejectedPage
from pipeline.limits import check_deadline
from pipeline.normalize.vocabulary import is_known_heading
from pipeline.parse.document import (
    BREADCRUMB,
    CHROME_LINES,
    CODE_LINE,
    Block,
    Document,
    Heading,
    Item,
    ListBlock,
    Paragraph,
    clean,
    split_label,
)

#: Elements whose whole subtree is site furniture or invisible (never content).
DROP_TAGS = frozenset(
    """
    nav footer script style noscript template form button iframe svg math aside select textarea
    object embed canvas dialog
    """.split()
)
#: Phrasing elements: their text runs on within the current line (no word break added).
INLINE_TAGS = frozenset(
    """
    a abbr acronym b bdi bdo big cite code data del dfn em font i img ins kbd label mark nobr q rp
    rt ruby s samp small span strike strong sub sup time tt u var wbr picture source input meter
    output progress meta link
    """.split()
)
BOLD_TAGS = frozenset({"b", "strong"})
HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6, "dt": 2, "summary": 2}
HEADING_KIND = {"dt": "dt", "summary": "summary"}
CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
#: id/class words of cookie and consent banners. Such an element is parsed on probation and
#: dropped at its end unless it turned out to hold real content (a heading or many words), so a
#: wrapper like ``<div class="page gdpr-ready">`` around the whole page is not thrown away.
CHROME_CLASS = re.compile(r"cookie|consent|gdpr|banner", re.I)
CRUMB_CLASS = re.compile(r"crumb", re.I)
BOLD_STYLE = re.compile(r"font-weight\s*:\s*(?:bold|[6-9]00)", re.I)
#: A bullet or number starting a line of text: "• a", "- a", "1. a", "2) a".
MARKER = re.compile(r"^(?:([•·▪◦‣∙*\-–])|(\d{1,3})[.)])\s+(?=\S)")
GLYPH = re.compile(r"^[•·▪◦‣∙]\s*")
#: The characters a ``MARKER`` match can start with, besides digits; ``GLYPH``'s
_MARKER_FIRST = frozenset("•·▪◦‣∙*-–")
_GLYPH_FIRST = frozenset("•·▪◦‣∙")
#: Whole-bold lines longer than this are emphasis, not headings.
MAX_BOLD_HEADING_WORDS = 12
MAX_LINE_HEADING_WORDS = 8
MAX_HEADING_CHARS = 160
MAX_LABEL_WORDS = 6
#: A probationary (cookie-looking) region with more words than this is kept as content.
PROBATION_WORDS = 60
#: A breadcrumb-looking element with more words than this is content, not a breadcrumb.
CRUMB_WORDS = 15
#: A DOCTYPE with an internal subset (entity declarations): lxml's HTML parser would show it as
#: text, so it is replaced by a plain DOCTYPE; entities are never expanded.
DOCTYPE_SUBSET = re.compile(r"<!DOCTYPE[^>\[]*\[[^\]]*\]\s*>", re.I)
HAS_REGION = re.compile(r"<(?:main|article)[\s>/]|role\s*=\s*[\"']?main", re.I)

_CHROME_MAX = max(len(c) for c in CHROME_LINES)
#: Lists nested deeper than this are flattened onto the deepest level (keeps consumers' recursion safe).
MAX_LIST_DEPTH = 8

ENGINES = ("bs4", "lxml")
#: per-thread parsers reused from page to page (``_soup``, ``_via_lxml``)
_local = threading.local()

# end-of-element actions kept on the builder's stack
_INLINE, _BLOCK, _BOLD, _HREF, _PRE = 0, 1, 2, 3, 4
#: Tags ``_Builder.start`` treats specially in some way; any other tag without attributes is a plain
#: block (``_Builder._block``), the most common event, which ``start`` handles first.
_SPECIAL_TAGS = (
    INLINE_TAGS
    | DROP_TAGS
    | HEADING_TAGS.keys()
    | {"br", "title", "header", "nav", "ul", "ol", "menu", "li", "main", "article", "pre"}
)
#: Tags that, without attributes, go through ``start``'s checks to ``_open`` unchanged.
_OPEN_TAGS = HEADING_TAGS.keys() | {"ul", "ol", "menu", "li", "main", "article", "pre"}


class _Line:
    """One visual line of text in the making: its pieces and what they looked like."""

    __slots__ = ("parts", "bold", "plain", "href")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.bold = False  # some non-blank text was bold
        self.plain = False  # some non-blank text was not bold
        self.href: str | None = None


class _Sink:
    """Where text goes: the page flow, an open heading, or an open list item."""

    __slots__ = ("kind", "lines", "level", "hkind", "children", "list")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "flow" | "heading" | "item"
        self.lines: list[_Line] = [_Line()]
        self.level = 0
        self.hkind = "h"
        self.children: list[Item] = []
        self.list: _ListCtx | None = None

    def text(self) -> tuple[str, str | None]:
        if len(self.lines) == 1:  # the common case, without the generators
            ln = self.lines[0]
            return clean("".join(ln.parts)), ln.href
        href = next((ln.href for ln in self.lines if ln.href), None)
        return clean(" ".join("".join(ln.parts) for ln in self.lines)), href


class _ListCtx:
    __slots__ = ("ordered", "items", "parent_item", "parent_list")

    def __init__(self, ordered: bool, parent_item: _Sink | None, parent_list: _ListCtx | None) -> None:
        self.ordered = ordered
        self.items: list[Item] = []
        self.parent_item = parent_item
        self.parent_list = parent_list


class _Builder:
    """Turns a stream of start/data/end events into Document blocks (see the module docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new page (the lxml engine reuses one builder as its parser's target)."""
        self.blocks: list[Block] = []
        self.meta: dict[str, str] = {}
        self.ends: list[Any] = []
        self.skip = 0  # depth inside a dropped subtree
        self.capture = False  # collecting the <title> text
        self.cap_parts: list[str] = []
        self.bold = 0
        self.hrefs: list[str] = []
        self.pre = 0
        self.root_depth = 0  # open <main>/<article> elements
        self.regions: dict[str, list[int]] = {}  # "main"/"article" -> [start, end] block indexes
        self.flow = _Sink("flow")
        self.sink = self.flow
        self.sinks: list[_Sink] = []
        self.lists: list[_ListCtx] = []
        self.mlist: ListBlock | None = None  # the marker-made list the next marker line may join
        self.mlast = 0

    # -- events -------------------------------------------------------------------------------

    def start(self, tag: str, attrs: dict[str, Any]) -> bool:
        """Open an element; False means its subtree is dropped (a tree walker need not descend)."""
        if self.skip:
            self.skip += 1
            return False
        if not attrs and tag not in _SPECIAL_TAGS:
            # a plain block (<p>, <div>, <dd>, ...): what the checks below and ``_open`` come to
            if self.sink is self.flow:
                lines = self.flow.lines
                if len(lines) == 1 and not (lines[0].bold or lines[0].plain):
                    lines[0].parts.clear()  # ``_flush`` of a flow holding no text, inline
                else:
                    self._flush()
            else:
                self.sink.lines[-1].parts.append(" ")
            self.ends.append(_BLOCK)
            return True
        if not attrs and tag in _OPEN_TAGS:  # headings, lists, items, regions: straight to ``_open``
            self._open(tag, attrs)
            return True
        if tag in INLINE_TAGS:
            if tag in BOLD_TAGS:
                self.bold += 1
                self.ends.append(_BOLD)
            elif tag == "a" and (href := _href(attrs)):
                self.hrefs.append(href)
                self.ends.append(_HREF)
            elif tag == "span" and "style" in attrs and BOLD_STYLE.search(str(attrs["style"])):
                self.bold += 1
                self.ends.append(_BOLD)
            else:
                if (
                    tag == "link"
                    and "canonical" in str(attrs.get("rel", "")).split()
                    and (href := _href(attrs))
                ):
                    self.meta.setdefault("canonical_url", href)
                self.ends.append(_INLINE)
            return True
        if tag == "br":
            self._newline()
            self.ends.append(_INLINE)
            return True
        if tag == "title":
            return self._begin_skip(capture="html_title" not in self.meta)
        probation = None
        if attrs and tag not in ("html", "body", "main", "article"):
            role = attrs.get("role")
            if role in CHROME_ROLES:
                return self._begin_skip()
            if role == "main":
                self._open_region("main")
                return True
            marks = f"{attrs.get('id') or ''} {_cls(attrs.get('class') or '')}"
            if CRUMB_CLASS.search(marks) or CRUMB_CLASS.search(str(attrs.get("aria-label") or "")):
                probation = "crumb"
            elif CHROME_CLASS.search(marks):
                probation = "cookie"
        if (tag in DROP_TAGS and not (tag == "nav" and probation == "crumb")) or (
            tag == "header" and not self.root_depth
        ):
            return self._begin_skip()
        if probation and self.sink is self.flow:
            # parsed as usual, then dropped at its end unless it held real content
            self._flush()
            start = len(self.blocks)
            self._open(tag, attrs)
            inner = self.ends.pop()
            kind = probation

            def close() -> None:
                self._run(inner)
                self._end_probation(start, kind)

            self.ends.append(close)
            return True
        if tag == "nav":
            return self._begin_skip()
        self._open(tag, attrs)
        return True

    def _open(self, tag: str, attrs: dict[str, Any]) -> None:
        """Open a block-level element (chrome already ruled out); pushes exactly one end action."""
        if tag in HEADING_TAGS:
            if self.sink is not self.flow:
                self._space()
                self.ends.append(_INLINE)
                return
            self._flush()
            s = _Sink("heading")
            s.level = HEADING_TAGS[tag]
            s.hkind = HEADING_KIND.get(tag, "h")
            self.sinks.append(self.sink)  # _push_sink(s), inline
            self.sink = s
            self.ends.append(self._end_heading)
            return
        if tag in ("ul", "ol", "menu"):
            if self.sink.kind == "heading" or len(self.lists) >= MAX_LIST_DEPTH:
                # too deep: the sublist's items join the deepest list (consumers recurse safely)
                self._space()
                self.ends.append(_INLINE)
                return
            parent_item = self.sink if self.sink.kind == "item" else None
            parent_list = self.lists[-1] if (self.lists and parent_item is None) else None
            if parent_item is None and parent_list is None:
                self._flush()
            self.lists.append(_ListCtx(tag == "ol", parent_item, parent_list))
            self.ends.append(self._end_list)
            return
        if tag == "li":
            if (
                self.sink.kind == "heading"
                or not self.lists
                or (self.sink.kind == "item" and self.sink.list is self.lists[-1])
            ):
                # stray <li> (no list open, or inside a sibling item's text): a plain block
                self._block()
                return
            s = _Sink("item")
            s.list = self.lists[-1]
            self.sinks.append(self.sink)  # _push_sink(s), inline
            self.sink = s
            self.ends.append(self._end_item)
            return
        if tag in ("main", "article"):
            self._open_region(tag)
            return
        if tag == "pre":
            self._block()
            self.pre += 1
            self.ends[-1] = _PRE
            return
        self._block()

    def data(self, s: str) -> None:
        if self.skip:
            if self.capture:
                self.cap_parts.append(s)
            return
        if not self.pre:  # ``_add(s)``, inline: the most common event
            line = self.sink.lines[-1]
            line.parts.append(s)
            if not s.isspace():
                if self.bold:
                    line.bold = True
                else:
                    line.plain = True
                if line.href is None and self.hrefs:
                    line.href = self.hrefs[-1]
            return
        if "\n" in s and self.sink is self.flow:
            first, *rest = s.split("\n")
            self._add(first)
            for piece in rest:
                self._newline()
                self._add(piece)
            return
        self._add(s)

    def end(self, tag: str | None = None) -> None:
        """Close the innermost open element (``tag`` is accepted for lxml's target interface)."""
        if self.skip:
            self.skip -= 1
            if not self.skip and self.capture:
                self.capture = False
                title = clean("".join(self.cap_parts))
                if title:
                    self.meta["html_title"] = title
            return
        act = self.ends.pop()
        if act is _INLINE:
            return
        if act is _BLOCK:  # ``_run(_BLOCK)``, inline: the most common end
            if self.sink is self.flow:
                lines = self.flow.lines
                if len(lines) == 1 and not (lines[0].bold or lines[0].plain):
                    lines[0].parts.clear()  # ``_flush`` of a flow holding no text, inline
                else:
                    self._flush()
            else:
                self.sink.lines[-1].parts.append(" ")
            return
        self._run(act)

    def _run(self, act: Any) -> None:
        """Carry out an element's end action."""
        if act is _INLINE:
            return
        if act is _BLOCK:
            self._boundary()
        elif act is _BOLD:
            self.bold -= 1
        elif act is _HREF:
            self.hrefs.pop()
        elif act is _PRE:
            self.pre -= 1
            self._boundary()
        else:
            act()

    # -- text ---------------------------------------------------------------------------------

    def _add(self, s: str) -> None:
        line = self.sink.lines[-1]
        line.parts.append(s)
        if not s.isspace():
            if self.bold:
                line.bold = True
            else:
                line.plain = True
            if line.href is None and self.hrefs:
                line.href = self.hrefs[-1]

    def _newline(self) -> None:
        if self.sink is self.flow:
            self.flow.lines.append(_Line())
        else:
            self._space()

    def _space(self) -> None:
        self.sink.lines[-1].parts.append(" ")

    def _block(self) -> None:
        self._boundary()
        self.ends.append(_BLOCK)

    def _boundary(self) -> None:
        """A block element starts or ends: a line break in the flow, a space inside an item."""
        if self.sink is self.flow:
            self._flush()
        else:
            self._space()

    def _push_sink(self, s: _Sink) -> None:
        self.sinks.append(self.sink)
        self.sink = s

    def _pop_sink(self) -> _Sink:
        s = self.sink
        self.sink = self.sinks.pop()
        return s

    # -- skipping and capturing ---------------------------------------------------------------

    def _begin_skip(self, capture: bool = False) -> bool:
        self.skip = 1
        self.capture = capture
        self.cap_parts = []
        return capture  # descend only to collect the <title> text

    def _end_probation(self, start: int, kind: str) -> None:
        """End of a cookie- or breadcrumb-looking element: drop its blocks unless they are content."""
        self._flush()
        region = self.blocks[start:]
        if not region:
            return
        if any(isinstance(b, Heading) for b in region):
            return
        words = _words(region)
        if kind == "cookie" and words > PROBATION_WORDS:
            return
        if kind == "crumb":
            if words > CRUMB_WORDS:
                return
            self.meta.setdefault("breadcrumb", " / ".join(_texts(region)))
        del self.blocks[start:]
        self.mlist = None
        for span in self.regions.values():
            span[0] = min(span[0], start)
            span[1] = min(span[1], start)

    # -- regions ------------------------------------------------------------------------------

    def _open_region(self, name: str) -> None:
        self._flush()
        self.root_depth += 1
        first = name not in self.regions
        if first:
            self.regions[name] = [len(self.blocks), len(self.blocks)]

        def close() -> None:
            self._flush()
            self.root_depth -= 1
            if first:
                self.regions[name][1] = len(self.blocks)

        self.ends.append(close)

    # -- block emission -----------------------------------------------------------------------

    def _emit(self, block: Block) -> None:
        self.blocks.append(block)
        self.mlist = None

    def _flush(self) -> None:
        """Turn the flow's pending lines into blocks."""
        lines = self.flow.lines
        if len(lines) == 1:
            ln = lines[0]
            if not (ln.bold or ln.plain):  # nothing but whitespace yet: the common case
                ln.parts.clear()
                return
        self.flow.lines = [_Line()]
        for ln in lines:
            if ln.bold or ln.plain:
                text = clean("".join(ln.parts))
                if text:
                    self._line(text, not ln.plain, ln.href)

    def _line(self, text: str, bold: bool, href: str | None) -> None:
        first = text[0]  # the text is clean() and not empty
        m = MARKER.match(text) if first in _MARKER_FIRST or first.isdigit() else None
        if m:
            body = text[m.end() :]
            if m.group(1) == "•" and " • " in body:
                for piece in body.split(" • "):
                    if piece.strip():
                        self._marker_item(piece.strip(), None, href)
                return
            self._marker_item(body, int(m.group(2)) if m.group(2) else None, href)
            return
        if len(text) <= MAX_HEADING_CHARS:
            words = text.count(" ") + 1  # the text is clean(): single spaces
            sentence = text.endswith(".") and not text.endswith("..")  # bold emphasis, not a heading
            if bold and words <= MAX_BOLD_HEADING_WORDS and not sentence:
                if text.endswith(":"):
                    self._heading(text, 8, "label")
                else:
                    self._heading(text, 7, "bold")
                return
            if words <= MAX_LINE_HEADING_WORDS and is_known_heading(text):
                # kept as written: a trailing colon tells normalize it may be a sub-heading
                self._emit(Heading(text, 2, "line"))
                return
            if text.endswith(":") and words <= MAX_LABEL_WORDS and text[0].isupper():
                self._heading(text, 8, "label")
                return
        self.blocks.append(Paragraph(text, href))  # _emit, inline
        self.mlist = None

    def _marker_item(self, text: str, number: int | None, href: str | None) -> None:
        ordered = number is not None
        item = _item(text, href, [])
        if item is None:
            return
        ml = self.mlist
        if ml is not None and ml.ordered == ordered and (not ordered or number == self.mlast + 1):
            ml.items.append(item)
        else:
            ml = ListBlock(ordered, [item])
            self._emit(ml)
            self.mlist = ml
        self.mlast = number or 0

    def _heading(self, text: str, level: int, kind: str) -> None:
        text = text.rstrip(": \u00a0：")
        if text:
            self.blocks.append(Heading(text, level, kind))  # type: ignore[arg-type]  # _emit, inline
            self.mlist = None

    def _end_heading(self) -> None:
        s = self.sink  # _pop_sink(), inline
        self.sink = self.sinks.pop()
        text, _ = s.text()
        self._heading(text, s.level, s.hkind)

    def _end_item(self) -> None:
        s = self.sink  # _pop_sink(), inline
        self.sink = self.sinks.pop()
        text, href = s.text()
        item = _item(GLYPH.sub("", text) if text[:1] in _GLYPH_FIRST else text, href, s.children)
        if item is not None and s.list is not None:
            s.list.items.append(item)

    def _end_list(self) -> None:
        ctx = self.lists.pop()
        if ctx.parent_item is not None:
            ctx.parent_item.children.extend(ctx.items)
            ctx.parent_item.lines[-1].parts.append(" ")  # text after the sublist is a new word
        elif ctx.parent_list is not None:
            target = ctx.parent_list.items
            if target:
                target[-1].children.extend(ctx.items)
            else:
                target.extend(ctx.items)
        else:
            self._flush()  # loose text inside the list, outside any item
            if ctx.items:
                self._emit(ListBlock(ctx.ordered, ctx.items))

    # -- result -------------------------------------------------------------------------------

    def close(self) -> Document:
        self._flush()
        blocks = self.blocks
        for name in ("main", "article"):
            span = self.regions.get(name)
            if span and span[1] > span[0]:
                blocks = blocks[span[0] : span[1]]
                break
        return _finish(blocks, self.meta)


def _finish(blocks: list[Block], meta: dict[str, str]) -> Document:
    """Pick the title and the code-system line out of the blocks; drop chrome lines."""
    out: list[Block] = []
    for i, b in enumerate(blocks):
        if type(b) is Paragraph:
            # lower() never shortens a text: a longer one cannot be a chrome line
            if len(b.text) <= _CHROME_MAX and b.text.lower() in CHROME_LINES:
                continue
            if i < 6 and BREADCRUMB.match(b.text) and "breadcrumb" not in meta:
                meta["breadcrumb"] = b.text
                continue
        out.append(b)
    doc = Document(meta=meta, clean_texts=True)  # _flush, _Sink.text and _item make clean texts
    h1 = None
    for i, b in enumerate(out):
        if type(b) is Heading and b.level == 1 and b.kind == "h":
            h1 = i
            break
    if h1 is not None:
        doc.title = _text(out.pop(h1))
    code_at = next(
        (
            i
            for i, b in enumerate(out[:8])
            if isinstance(b, Paragraph | Heading) and len(b.text) < 40 and CODE_LINE.match(b.text)
        ),
        None,
    )
    if code_at is not None:
        doc.code_line = _text(out.pop(code_at))
    if doc.title is None:
        cand = None
        if code_at:
            cand = code_at - 1
        else:
            cand = next((i for i, b in enumerate(out[:8]) if not isinstance(b, ListBlock)), None)
        if cand is not None:
            b = out[cand]
            is_label = isinstance(b, Heading) and b.kind == "label"
            if isinstance(b, Paragraph | Heading) and not is_label and not is_known_heading(b.text):
                doc.title = out.pop(cand).text  # type: ignore[union-attr]
    doc.blocks = out
    return doc


def _text(b: Block) -> str:
    return b.text if isinstance(b, Paragraph | Heading) else ""


def _item(text: str, href: str | None, children: list[Item]) -> Item | None:
    label, rest = split_label(text)
    if not rest and label is None and not children:
        return None
    return Item(text=rest, label=label, children=children, href=href)


def _texts(blocks: list[Block]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, ListBlock):
            out.extend(it.text for it in b.items if it.text)
        else:
            out.append(b.text)
    return out


def _words(blocks: list[Block]) -> int:
    n = 0
    for b in blocks:
        if isinstance(b, Paragraph):
            n += len(b.text.split())
        elif isinstance(b, ListBlock):
            stack = list(b.items)
            while stack:
                it = stack.pop()
                n += len(it.text.split()) + len((it.label or "").split())
                stack.extend(it.children)
    return n


def _href(attrs: dict[str, Any]) -> str | None:
    """An element's ``href`` (under ``HREF_ALIAS`` when ``_region_markup`` carried it), or None."""
    href = attrs.get("href") or attrs.get(HREF_ALIAS)
    return str(href) if href else None


def _cls(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


# -- engines ----------------------------------------------------------------------------------


_END = object()


def _walk_soup(soup: BeautifulSoup, b: _Builder) -> None:
    """Feed the soup to the builder in document order, without recursion."""
    stack: list[Any] = list(reversed(soup.contents))
    pop, push, extend = stack.pop, stack.append, stack.extend
    steps = 0
    while stack:
        steps += 1
        if not steps & 4095:
            check_deadline()  # the per-page time budget where no alarm can enforce it (threads)
        node = pop()
        if node is _END:
            b.end()
            continue
        kind = type(node)
        if kind is NavigableString:
            b.data(node)
        elif kind is Tag or isinstance(node, Tag):
            if b.start(node.name, node.attrs):
                push(_END)
                extend(reversed(node.contents))
            else:
                b.end()
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            b.data(node)


#: The elements BeautifulSoup is given when the page has a content region (``_region_markup``),
#: in document order; only the outermost of nested ones are kept.
_REGION_XPATH = etree.XPath("//main | //article | //*[@role='main'] | //title | //link")
_HREFS = etree.XPath("descendant-or-self::*[@href]")
#: libxml2's HTML serializer rewrites ``href`` values (strips leading blanks, %-escapes spaces,
#: tabs and non-ASCII); ``_region_markup`` carries them under this name, which the builder reads
#: when ``href`` is absent.
HREF_ALIAS = "data-procpipe-href"


def _region_markup(text: str) -> str | None:
    """The markup BeautifulSoup needs when the page has a content region: the region elements
    (``main``/``article``/``role=main``, outermost only), the ``<title>`` and the ``<link>``
    tags, cut out of the page by lxml's C parser and serialized in document order.

    BeautifulSoup then never sees the site chrome at all (with a ``parse_only`` filter it would
    still handle every chrome event in Python, at about two thirds of the cost of building it).
    None when lxml finds no region."""
    root = etree.fromstring(text, etree.HTMLParser(recover=True, no_network=True))
    if root is None:
        return None
    found = _REGION_XPATH(root)
    inside = set(found)
    picked = [el for el in found if not any(a in inside for a in el.iterancestors())]
    if all(el.tag in ("title", "link") for el in picked):
        return None
    try:
        for el in picked:
            for node in _HREFS(el):
                node.set(HREF_ALIAS, node.get("href"))
                del node.attrib["href"]
    except ValueError:  # a control character lxml will not set again: soup the whole page
        return None
    return "".join(etree.tostring(el, encoding="unicode", method="html", with_tail=False) for el in picked)


class _ReusedParserBuilder(LXMLTreeBuilder):
    """BeautifulSoup's lxml tree builder, keeping its lxml parser from page to page.

    BeautifulSoup makes a new lxml target parser for every document, and lxml then inspects the
    target's methods (``inspect.signature``), ~0.05 ms a page; the builder is the target, so
    the same parser serves every page of the thread (``_soup``)."""

    _parser: Any = None

    def parser_for(self, encoding: Any) -> Any:
        if encoding is not None:
            return super().parser_for(encoding)
        if self._parser is None:
            self._parser = super().parser_for(None)
        return self._parser


def _soup(markup: str) -> BeautifulSoup:
    """``BeautifulSoup(markup, "lxml", multi_valued_attributes=None)``, on this thread's builder."""
    builder: _ReusedParserBuilder | None = getattr(_local, "soup", None)
    _local.soup = None  # taken: a parse that raises leaves no half-used parser behind
    if builder is None:
        builder = _ReusedParserBuilder(multi_valued_attributes=None)
    soup = BeautifulSoup(markup, builder=builder)
    _local.soup = builder
    return soup


def _via_bs4(text: str) -> Document:
    if HAS_REGION.search(text):
        region = _region_markup(text)
        if region is not None:
            b = _Builder()
            _walk_soup(_soup(region), b)
            if b.regions:
                return b.close()
    b = _Builder()
    _walk_soup(_soup(text), b)
    return b.close()


def _via_lxml(text: str) -> Document:
    """The builder as the target of lxml's parser: events straight from the C parser.

    One parser and builder per thread are reused from page to page: a new target parser costs
    lxml an ``inspect.signature`` of the target's methods, ~0.05 ms a page."""
    cached: tuple[etree.HTMLParser, _Builder] | None = getattr(_local, "lxml", None)
    _local.lxml = None  # taken: a parse that raises leaves no half-used parser behind
    if cached is None:
        builder = _Builder()
        parser = etree.HTMLParser(target=builder, recover=True, no_network=True)
    else:
        parser, builder = cached
        builder.reset()
    parser.feed(text)
    doc: Document = parser.close()
    _local.lxml = (parser, builder)
    return doc


def parse_html(text: str, *, engine: str | None = None) -> Document:
    """Parse an HTML page into a Document.

    ``engine``: "bs4" (BeautifulSoup on lxml) or "lxml" (lxml's parser feeding the same builder
    directly, several times faster); default ``$PROCPIPE_HTML_ENGINE``, else "bs4". Raises
    ``RejectedPage`` when the markup cannot be parsed at all.
    """
    engine = engine or os.environ.get("PROCPIPE_HTML_ENGINE") or "bs4"
    if engine not in ENGINES:
        raise ValueError(f"unknown HTML engine {engine!r} (expected one of {', '.join(ENGINES)})")
    if not text.strip():
        return Document()
    if "[" in text[:2048] and DOCTYPE_SUBSET.search(text, 0, 2048):
        text = DOCTYPE_SUBSET.sub("<!DOCTYPE html>", text, count=1)
    run = _via_bs4 if engine == "bs4" else _via_lxml
    try:
        try:
            return run(text)
        except UnicodeEncodeError:  # lone surrogates cannot reach libxml2: replace them
            return run(text.encode("utf-8", "replace").decode("utf-8"))
    except RecursionError as exc:
        raise RejectedPage("page nested too deeply to parse", stage="parse") from exc
    except (etree.ParserError, etree.XMLSyntaxError) as exc:
        raise RejectedPage(f"cannot parse html: {exc}", stage="parse") from exc
