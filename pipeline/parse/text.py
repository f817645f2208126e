"""Text renderings and Markdown -> Document: the line-based front end of the parse stage.

Two real text styles are absorbed: blank-line separated with "  • " bullets and "  1. " steps, and
single-newline with "- " bullets. Markdown adds "#" headings, whole-bold lines, inline markup
(``**x**``, ``_x_``, ``[text](url)``), fences, tables and block quotes. Both produce the same
Document: ``title`` is the first content line after chrome ("Search all medical codes") and the
breadcrumb ("Codes / HCPCS / A4253", kept in ``meta["breadcrumb"]``), ``code_line`` the
code-system line ("CPT4 code"); everything else becomes blocks in page order.

Headings: a line equal to a known vocabulary heading (with or without a colon, "#"s or indentation)
is ``Heading(level=2, kind="line")``, its text as written (a trailing colon kept: normalize reads
"Anesthesia:" under a section as a sub-heading); a Markdown "#" line is ``Heading(level=#count, kind="h")``;
a whole-bold line is ``Heading(level=7, kind="bold")``; a short "Label:" line is
``Heading(level=8, kind="label")``. Lead-in sentences ("The procedure is indicated for:") and
colon-less lines that merely look like sub-headings stay paragraphs: sections are never invented.

Raw HTML no reader sees (script and style elements, comments) is dropped before the lines are read,
so it never reaches a Document; an unclosed one hides the rest of the page, as in a browser.

Every pass is linear in the input (regexes use negated classes, never nested quantifiers) and no
recursion is used, so a 10 MB single-line page or a deeply indented list cannot blow up.
"""

from __future__ import annotations

import re

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

#: Deeper list indentation than this is flattened onto the deepest level (keeps consumers' recursion safe).
MAX_LIST_DEPTH = 8
#: Longest line still considered as a heading, breadcrumb or code-system line.
_MAX_HEADING_CHARS = 120
_CHROME_MAX = max((len(c) for c in CHROME_LINES), default=0) + 16
#: Most words a "Label:" (item label or label heading) may have.
_MAX_LABEL_WORDS = 6

_BULLET = re.compile(r"(?:[•●◦○▪▫■□‣⁃∙·]\s*|[-*+–]\s+|(\d{1,3})[.)]\s+)")
_ATX = re.compile(r"(#{1,6})(?:\s+|$)")
_ALNUM = re.compile(r"[^\W_]")
_WHOLE_BOLD = re.compile(r"(?:\*\*([^*\n]+)\*\*|__([^_\n]+)__)\s*(:?)")
_SETEXT = re.compile(r"(=+|-{2,})")
_FENCE = re.compile(r"(`{3,}|~{3,})")
_QUOTES = re.compile(r"(?:>\s*)+")
# Raw HTML a Markdown page (or a doctored text rendering) may carry that no reader sees: script and
# style elements and comments. An unclosed one hides the rest of the page, as in a browser.
_INVISIBLE_OPEN = re.compile(r"<(script|style)\b[^<>]{0,2000}>|<!--", re.I)
_INVISIBLE_CLOSE = {
    "script": re.compile(r"</script\s*>", re.I),
    "style": re.compile(r"</style\s*>", re.I),
    "<!--": re.compile(r"-->"),
}
_TABLE_RULE = re.compile(r"[|:\-\s]+")
# A Markdown heading left at the end of a line ("... text. ##### Patient Criteria").
_TAIL_ATX = re.compile(r"\s(#{2,6})[ \t]+([A-Z][^#\n]{0,100}?)[ \t#]*$")
# A heading glued to the end of a bullet ("... bleeding.Rare Risks:").
_TAIL_GLUED = re.compile(r"(?<=[.!?)\]])([A-Z][^.!?:\n]{1,100}?)\s*(:?)\s*$")

# Markdown inline markup. Every class excludes its own delimiters, so each scan stops at the next
# delimiter and a whole line is processed in linear time.
_MD_IMAGE = re.compile(r"!\[([^\[\]\n]*)\]\(([^()\s]*)(?:\s+\"[^\"\n]*\")?\)")
_MD_LINK = re.compile(r"\[([^\[\]\n]*)\]\(([^()\s]*)(?:\s+\"[^\"\n]*\")?\)")
_MD_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]*)>")
_MD_TAG = re.compile(r"</?[A-Za-z][^<>\n]{0,200}>")
_MD_CODE = re.compile(r"`([^`\n]+)`")
_MD_BOLD = re.compile(r"\*\*([^*\n]+)\*\*|__([^_\n]+)__")
_MD_ITALIC = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])|(?<![\w_])_([^_\n]+)_(?![\w_])")
_MD_STRIKE = re.compile(r"~~([^~\n]+)~~")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")

#: Words that end a lead-in sentence ("... performed to:", "... indicated for:") rather than a label.
_LEAD_IN_LAST = frozenset(
    "to for include includes including involve involves involving are is be been have has as like "
    "with of by following follows that when if may should will can were was such in on from".split()
)
#: Words that start a lead-in sentence ("This typically involves:", "They may:").
_LEAD_IN_FIRST = frozenset("this these those it they you we he she your our there".split())


def drop_invisible(text: str) -> str:
    """``text`` without script/style elements and HTML comments (a dropped span keeps a line break)."""
    if "<" not in text:
        return text
    out: list[str] = []
    pos = 0
    while (m := _INVISIBLE_OPEN.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        end = _INVISIBLE_CLOSE[(m.group(1) or "<!--").lower()].search(text, m.end())
        if end is None:
            pos = len(text)
            break
        if "\n" in text[m.start() : end.end()]:
            out.append("\n")
        pos = end.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def parse_text(text: str) -> Document:
    """Parse a text rendering (either real style) into a Document."""
    return _Parser(markdown=False).parse(text)


def parse_markdown(text: str) -> Document:
    """Parse a Markdown page into a Document (same shape as a text rendering's)."""
    return _Parser(markdown=True).parse(text)


def _has_content(text: str) -> bool:
    return _ALNUM.search(text) is not None


def _indent(line: str) -> int:
    lead = line[: len(line) - len(line.lstrip())]
    return len(lead.expandtabs(4))


def _written(text: str) -> str:
    """Heading text as written: surrounding Markdown emphasis/hash marks removed, a trailing colon kept
    ("**Anesthesia:**" -> "Anesthesia:"). Normalize reads the colon as the sub-heading form."""
    t = clean(text)
    colon = t.endswith(":")
    t = t.rstrip(":").strip().strip("*_#").strip()
    colon = colon or t.endswith(":")
    t = t.rstrip(":").strip()
    return t + ":" if colon and t else t


def _bare(text: str) -> str:
    """Heading text for matching: as written, without the trailing colon."""
    return _written(text).rstrip(":")


def _is_known(text: str) -> bool:
    return 0 < len(text) <= _MAX_HEADING_CHARS and is_known_heading(text)


def _is_label_line(text: str) -> bool:
    """A short "Label:" line (a sub-heading candidate), not a lead-in sentence ending in a colon."""
    if not text.endswith(":") or len(text) > _MAX_HEADING_CHARS:
        return False
    body = text[:-1].strip()
    words = body.split()
    if not 1 <= len(words) <= _MAX_LABEL_WORDS or not body[0].isupper():
        return False
    if ":" in body or body[-1] in ".!?;,":
        return False
    if words[-1].lower() in _LEAD_IN_LAST or words[0].lower() in _LEAD_IN_FIRST:
        return False
    return True


def _inline(text: str) -> tuple[str, str | None]:
    """Strip Markdown inline markup, keeping link text; returns (text, first link target)."""
    href: str | None = None
    if "[" in text:
        text = _MD_IMAGE.sub(r"\1", text)
        m = _MD_LINK.search(text)
        href = m.group(2) or None if m else None
        text = _MD_LINK.sub(r"\1", text)
    if "<" in text:
        m = _MD_AUTOLINK.search(text)
        if m and href is None:
            href = m.group(1)
        text = _MD_AUTOLINK.sub(r"\1", text)
        text = _MD_TAG.sub(" ", text)
    if "`" in text:
        text = _MD_CODE.sub(r"\1", text)
    if "*" in text or "_" in text:
        text = _MD_BOLD.sub(lambda m: m.group(1) or m.group(2), text)
        text = _MD_ITALIC.sub(lambda m: m.group(1) or m.group(2), text)
    if "~~" in text:
        text = _MD_STRIKE.sub(r"\1", text)
    if "\\" in text:
        text = _MD_ESCAPE.sub(r"\1", text)
    return text, href


def _tail_heading(text: str, *, glued: bool) -> tuple[str, Heading | None]:
    """Split a heading stuck at the end of a line: a Markdown leftover ("... ##### Patient Criteria")
    or, when ``glued``, a heading run into the text without a space ("... bleeding.Rare Risks:")."""
    start = max(0, len(text) - 160)
    tail = text[start:]
    m = _TAIL_ATX.search(tail) if "#" in tail else None  # its matches hold "##"
    if m:
        head = text[: start + m.start()].rstrip()
        name = _bare(m.group(2))
        if head and name and _has_content(head):
            if _is_known(name):
                return head, Heading(_written(m.group(2)), 2, "line")
            return head, Heading(name, 8, "label")
    # a _TAIL_GLUED match ends the text but for blanks and a colon, and holds no ".", "!" or "?":
    # a line ending in one of them (most items end in ".") cannot match
    if glued and tail.rstrip()[-1:] not in (".", "!", "?"):
        m = _TAIL_GLUED.search(tail)
        if m:
            head = text[: start + m.start()].rstrip()
            name = clean(m.group(1))
            if head and _has_content(head):
                if _is_known(name):
                    return head, Heading(name + m.group(2), 2, "line")
                if m.group(2) and _is_label_line(name + ":"):
                    return head, Heading(name, 8, "label")
    return text, None


class _Parser:
    """One pass over the lines; holds the open list (if any) and the nesting stack."""

    def __init__(self, *, markdown: bool) -> None:
        self.md = markdown
        self.doc = Document()
        self.blocks: list[Block] = self.doc.blocks
        self.list: ListBlock | None = None
        self.stack: list[tuple[int, Item]] = []  # (indent, item) of the open nesting path
        self.title_done = False
        self.seen_heading = False
        self.last_para: tuple[int, int] | None = None  # (line number, block index) of a paragraph
        self.last_item_line = -2  # line number of the last bullet (Markdown continuation lines)
        self.more: dict[int, tuple[Item, list[str]]] = {}  # continuation lines of Markdown items

    # -- entry -----------------------------------------------------------------------------------
    def parse(self, text: str) -> Document:
        lines = drop_invisible(text.lstrip("\ufeff")).splitlines()
        start = self._front_matter(lines) if self.md else 0
        fence: str | None = None
        for no in range(start, len(lines)):
            if not no & 1023:
                check_deadline()  # the per-page time budget, where no alarm signal can enforce it
            raw = lines[no]
            stripped = raw.strip()
            if self.md:
                fm = _FENCE.match(stripped)
                if fence is not None:
                    if fm and stripped.startswith(fence) and not stripped[len(fm.group(1)) :].strip():
                        fence = None
                    elif _has_content(stripped):
                        self._paragraph(clean(stripped), None, no)
                    continue
                if fm:
                    fence = fm.group(1)[0] * 3
                    self._close_list()
                    continue
            if not stripped:
                continue
            self._line(no, raw, stripped)
        for item, parts in self.more.values():
            item.text = clean(" ".join([item.text, *parts]))
        return self.doc

    def _front_matter(self, lines: list[str]) -> int:
        """A leading "---" block of "key: value" lines goes to ``meta``; returns the first body line."""
        if not lines or lines[0].strip() != "---":
            return 0
        for end in range(1, min(len(lines), 200)):
            if lines[end].strip() in ("---", "..."):
                break
        else:
            return 0
        for line in lines[1:end]:
            key, sep, value = line.partition(":")
            if sep and key.strip() and not line[:1].isspace():
                self.doc.meta[key.strip()] = clean(value).strip("\"'")
        return end + 1

    # -- one line --------------------------------------------------------------------------------
    def _line(self, no: int, raw: str, s: str) -> None:
        if len(s) <= _CHROME_MAX and clean(s).lower() in CHROME_LINES:
            return
        indent = _indent(raw)
        if self.md:
            if s.startswith(">"):  # block quote (nested or not): parse what it quotes
                s = s[_QUOTES.match(s).end() :].strip()  # type: ignore[union-attr]
                indent = 0
            if not s:
                return
            if self._setext(no, s):
                return
            if s.startswith("|"):
                self._table_row(no, s)
                return
        if not self.title_done and self._header(s):
            return
        if (
            self.doc.code_line is None
            and not self.seen_heading
            and len(s) <= _MAX_HEADING_CHARS
            and CODE_LINE.match(clean(self._inline(s)[0]))
        ):
            self.doc.code_line = clean(self._inline(s)[0])
            return
        bullet = _BULLET.match(s)
        if bullet:
            content = s[bullet.end() :]
            if _has_content(content):
                self._item(no, indent, bullet.group(1) is not None, content)
            return  # an empty bullet ("-", "* * *") carries nothing
        if not _has_content(s):
            return  # rules, separators, stray punctuation
        if self.md and self.list is not None and self.last_item_line == no - 1 and self.stack:
            if indent > self.stack[-1][0]:  # an indented continuation of the item above
                item = self.stack[-1][1]
                more, _ = self._inline(s)
                # joined once at the end: re-cleaning the growing text per line would be quadratic
                self.more.setdefault(id(item), (item, []))[1].append(more)
                self.last_item_line = no
                return
        self._close_list()
        self._block_line(no, s)

    def _inline(self, s: str) -> tuple[str, str | None]:
        return _inline(s) if self.md else (s, None)

    def _header(self, s: str) -> bool:
        """Breadcrumb, code line and title before the body; True when the line was consumed."""
        text = clean(self._inline(s)[0])
        if not self.blocks and "breadcrumb" not in self.doc.meta and len(text) <= 200:
            if BREADCRUMB.match(text):
                self.doc.meta["breadcrumb"] = text
                return True
        if self.doc.code_line is None and len(text) <= _MAX_HEADING_CHARS and CODE_LINE.match(text):
            self.doc.code_line = text
            return True
        self.title_done = True
        if _BULLET.match(s) or _is_known(_bare(text)):
            return False  # the page starts with its body: no title line
        title = _written(text) if (s.startswith("#") or _WHOLE_BOLD.fullmatch(s)) else text
        if not _has_content(title):
            return False
        self.doc.title = title
        return True

    def _block_line(self, no: int, s: str) -> None:
        """A non-bullet line: heading of some kind, or a paragraph."""
        atx = _ATX.match(s)
        if atx:
            inner = s[atx.end() :]
            written = _written(self._inline(inner)[0])
            name = written.rstrip(":")
            if not name:
                return
            if self.md:
                self._heading(Heading(written, len(atx.group(1)), "h"))
            elif _is_known(name):
                self._heading(Heading(written, 2, "line"))
            elif len(name.split()) <= _MAX_LABEL_WORDS:
                self._heading(Heading(name, 8, "label"))
            else:
                self._paragraph(name, None, no)
            return
        bold = _WHOLE_BOLD.fullmatch(s)
        if bold:
            written = _written(self._inline(bold.group(1) or bold.group(2))[0] + bold.group(3))
            name = written.rstrip(":")
            if name:
                if not self.md and _is_known(name):
                    self._heading(Heading(written, 2, "line"))
                else:
                    self._heading(Heading(written, 7, "bold"))
                return
        text, href = self._inline(s)
        text = clean(text)
        text, tail = _tail_heading(text, glued=False)
        name = _bare(text)
        if _is_known(name):
            self._heading(Heading(_written(text), 2, "line"))
        elif _is_label_line(text):
            self._heading(Heading(name, 8, "label"))
        else:
            self._paragraph(text, href, no)
        if tail is not None:
            self._heading(tail)

    # -- blocks ----------------------------------------------------------------------------------
    def _heading(self, h: Heading) -> None:
        self._close_list()
        self.blocks.append(h)
        self.seen_heading = True

    def _paragraph(self, text: str, href: str | None, no: int) -> None:
        self._close_list()
        self.blocks.append(Paragraph(text, href))
        self.last_para = (no, len(self.blocks) - 1)

    def _close_list(self) -> None:
        self.list = None
        self.stack.clear()

    def _item(self, no: int, indent: int, ordered: bool, content: str) -> None:
        text, href = self._inline(content)
        text, tail = _tail_heading(clean(text), glued=True)
        label, body = split_label(text)
        if label is not None and len(label.split()) > _MAX_LABEL_WORDS:
            label, body = None, text
        item = Item(body, label, href=href)
        while self.stack and self.stack[-1][0] >= indent:
            self.stack.pop()
        if len(self.stack) >= MAX_LIST_DEPTH:
            del self.stack[MAX_LIST_DEPTH - 1 :]
        if self.stack:
            self.stack[-1][1].children.append(item)
        else:
            if self.list is None or (self.list.items and self.list.ordered != ordered):
                self.list = ListBlock(ordered)
                self.blocks.append(self.list)
            self.list.items.append(item)
        self.stack.append((indent, item))
        self.last_item_line = no
        if tail is not None:
            self._heading(tail)

    # -- Markdown-only line forms ----------------------------------------------------------------
    def _setext(self, no: int, s: str) -> bool:
        """A line over "=====" or "-----" becomes a heading (the paragraph above); bare rules are dropped."""
        m = _SETEXT.fullmatch(s)
        if not m:
            return False
        if self.last_para is not None and self.last_para[0] == no - 1:
            idx = self.last_para[1]
            para = self.blocks[idx]
            if isinstance(para, Paragraph):
                self.blocks[idx] = Heading(_written(para.text), 1 if s[0] == "=" else 2, "h")
                self.seen_heading = True
            self.last_para = None
            return True
        return s[0] == "=" or len(s) >= 3

    def _table_row(self, no: int, s: str) -> None:
        """A Markdown table row becomes a paragraph of its cells; the |---| rule is dropped."""
        if _TABLE_RULE.fullmatch(s):
            return
        cells = [c.strip() for c in s.strip("|").split("|")]
        text, href = _inline(" | ".join(c for c in cells if c))
        if _has_content(text):
            if not self.title_done:
                self.title_done = True
            self._paragraph(clean(text), href, no)
