"""The name block ("Name of the Procedure") -> procedure_name, common_names, technical_term.

Pages write it in many ways; all of these are understood:

- the name on its own line, then "Common Names: A, B" / "Medical Term: C" lines or bullets;
- everything on one line: "Psychotherapy, 60 minutes Common names: A, B Medical term: C";
- parentheses: "(Common names: A, B)", "Knee Orthosis (KO)", "X (also known as Y, HCPCS code J3304)";
- a sentence: "X, commonly referred to as Y. Technical term: Z (HCPCS Code: A4255)."

Code mentions ("(J3303)", "(HCPCS Code: A4255)", ", G0143") are removed from the names. With no
name line the title is the procedure name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from pipeline.normalize.codes import code_mentions
from pipeline.normalize.fields import _hit, may_contain
from pipeline.parse.document import clean
from schemas import Item, Section

_COMMON = r"(?:common(?:ly used)?|other|popular|alternative|alternate|lay)\s+(?:names?|terms?)(?:\s*\(s\))?"
_TECH = r"(?:technical|medical|clinical|scientific|official)(?:\s*/\s*(?:technical|medical|clinical|scientific))?\s+(?:terms?|names?)(?:\s*\(s\))?"  # noqa: E501
_PROC = r"(?:procedure\s+name|name\s+of\s+(?:the\s+)?procedure|name)"
_AKA = r"(?:also|commonly|often|sometimes|otherwise)\s+(?:referred\s+to|known|called)(?:\s+as)?|also\s+called|a\.?k\.?a\.?"  # noqa: E501
#: an embedded "Common names:" / "Medical Term:" label inside a line
_EMBEDDED = re.compile(
    rf"\b(?P<label>{_COMMON}|{_TECH}|procedure\s+name|name\s+of\s+(?:the\s+)?procedure|also known as)\s*:",
    re.I,
)
_AKA_SENTENCE = re.compile(rf"^(?P<name>.*?)[\s,;(]*\b(?:{_AKA})\s+(?P<rest>.+?)\)?\.?$", re.I | re.S)
_ACRONYM_PAREN = re.compile(r"^(?P<name>.+?)\s*\((?P<acr>[A-Z][A-Z0-9/&-]{1,7})\)$")
_SPLIT = re.compile(r"\s*[,;]\s*(?:(?:or|and)\s+)?|\s+(?:and/or)\s+")
#: ``_EMBEDDED`` for an ASCII line lower-cased (same spans: ``re.I`` on ASCII text is matching the
#: lower-cased text), opening with a lookahead for the letters a label can start with: each position
#: then fails on one character-set test, where the ``re.I`` pattern tried every alternative
_EMBEDDED_FIRST = "".join(sorted({w[0] for w in ("common", "other", "popular", "alternative", "alternate",
                                                  "lay", "technical", "medical", "clinical", "scientific",
                                                  "official", "procedure", "name", "also")}))  # fmt: skip
_EMBEDDED_LOWER = re.compile(rf"(?=[{_EMBEDDED_FIRST}])" + _EMBEDDED.pattern)
# every match of _EMBEDDED / _AKA_SENTENCE holds one of these (lower-cased): cheap tests first
_EMBEDDED_WORDS = ("name", "term", "known")
_AKA_WORDS = ("referred", "known", "called", "ka", "k.a")
_COMMON_LABEL = re.compile(_COMMON, re.I)
_AKA_LABEL = re.compile(r"also known as|aka|nicknames?", re.I)
_TECH_LABEL = re.compile(_TECH, re.I)
_PROC_LABEL = re.compile(_PROC, re.I)
_EMPTY_PARENS = re.compile(r"\(\s*[,;]?\s*\)")
_COMMA_PAREN = re.compile(r"\s*,\s*\)")
_PAREN_SPACE = re.compile(r"\(\s+")
_INITIAL_DOT = re.compile(r"\b[A-Za-z]\.$")
_LEAD_CONJ = re.compile(r"^(?:or|and)\s+", re.I)


@dataclass
class Names:
    procedure_name: str | None = None
    common_names: list[str] = field(default_factory=list)
    technical_term: str | None = None


@lru_cache(maxsize=4096)
def _label_kind(label: str) -> str | None:
    lab = clean(label).rstrip(":").strip()
    if _COMMON_LABEL.fullmatch(lab) or _AKA_LABEL.fullmatch(lab):
        return "common"
    if _TECH_LABEL.fullmatch(lab):
        return "technical"
    if _PROC_LABEL.fullmatch(lab):
        return "name"
    return None


@lru_cache(maxsize=256)
def _code_re(code: str) -> re.Pattern[str]:
    return re.compile(rf"(?:,\s*)?\b{re.escape(code)}\b", re.I)


def _plural(label: str) -> bool:
    lab = label.lower()
    return "(s)" in lab or lab.rstrip(": ").endswith("s") or "known as" in lab


def strip_codes(text: str, code: str | None = None) -> str:
    """Remove code mentions: "(J3303)", "(HCPCS Code: A4255)", "HCPCS code J3304", a bare copy of the code."""
    if "(" not in text:
        # most names: no bracket, no "code", no copy of the code, so nothing below but the
        # comma-bracket rule can change the text (``code_mentions`` needs "(" or "code")
        low = text.lower()
        if "code" not in low and not (code and _hit(text, low, (code.lower(),))):
            if ")" in text and "," in text:
                text = _COMMA_PAREN.sub(")", text)
            return clean(text).strip(" ,;")
    spans = sorted({(m.start(), m.end()) for m in code_mentions(text)}, reverse=True)
    for start, end in spans:
        text = text[:start] + " " + text[end:]
    if code and may_contain(text, (code.lower(),)):
        text = _code_re(code).sub(" ", text)
    # each rule only when its bracket is there (none of them adds a bracket)
    if "(" in text:
        text = _EMPTY_PARENS.sub(" ", text)
    if ")" in text and "," in text:
        text = _COMMA_PAREN.sub(")", text)
    if "(" in text:
        text = _PAREN_SPACE.sub("(", text)
    return clean(text).strip(" ,;")


def _tidy(text: str) -> str:
    t = clean(text).strip(" ,;")
    if t.endswith(".") and not _INITIAL_DOT.search(t):
        t = t[:-1].rstrip()
    if t.startswith("(") and t.endswith(")") and t.count("(") == 1:
        t = t[1:-1].strip()
    return t


def _split_names(text: str) -> list[str]:
    out = []
    for part in _SPLIT.split(_tidy(text)):
        p = _LEAD_CONJ.sub("", part.strip())
        p = _tidy(p)
        if p and p not in out:
            out.append(p)
    return out


class _Collector:
    def __init__(self, code: str | None) -> None:
        self.code = code
        self.names = Names()

    def common(self, text: str, plural: bool = True) -> None:
        text = strip_codes(text, self.code)
        for n in _split_names(text) if plural else [_tidy(text)]:
            if n and n not in self.names.common_names:
                self.names.common_names.append(n)

    def technical(self, text: str) -> None:
        t = _tidy(strip_codes(text, self.code))
        if t and self.names.technical_term is None:
            self.names.technical_term = t

    def name(self, text: str) -> None:
        t = _tidy(strip_codes(text, self.code))
        if not t or self.names.procedure_name is not None:
            return
        m = _ACRONYM_PAREN.match(t) if t.endswith(")") else None
        if m and m.group("acr").upper() != (self.code or "").upper():
            self.names.procedure_name = m.group("name").strip()
            self.common(m.group("acr"), plural=False)
            return
        self.names.procedure_name = t

    def labelled(self, label: str, text: str) -> bool:
        kind = _label_kind(label)
        if kind == "common":
            self.common(text, _plural(label))
        elif kind == "technical":
            self.technical(text)
        elif kind == "name":
            self.name(text)
        else:
            return False
        return True

    def line(self, text: str) -> None:
        """An unlabelled line: may embed labels, an "also known as" clause or parentheses."""
        t = clean(text)
        if t.startswith("(") and t.endswith(")"):
            t = t[1:-1].strip()
        # every _EMBEDDED match ends in a colon: most lines have none
        labels: list[tuple[int, int, str]] = []  # (start, end, label as written) of each embedded label
        if ":" in t and may_contain(t, _EMBEDDED_WORDS):
            if t.isascii():
                for m in _EMBEDDED_LOWER.finditer(t.lower()):
                    labels.append((m.start(), m.end(), t[m.start("label") : m.end("label")]))
            else:
                labels = [(m.start(), m.end(), m.group("label")) for m in _EMBEDDED.finditer(t)]
        head = t[: labels[0][0]] if labels else t
        for i, (_, label_end, label) in enumerate(labels):
            end = labels[i + 1][0] if i + 1 < len(labels) else len(t)
            self.labelled(label, t[label_end:end])
        head = head.strip()
        if head:
            self._head(head)

    def _head(self, head: str) -> None:
        head = strip_codes(head, self.code)
        m = _AKA_SENTENCE.match(head) if may_contain(head, _AKA_WORDS) else None
        if m:
            name = m.group("name").strip(" ,;(")
            if name:
                self.name(name)
            self.common(m.group("rest"))
            return
        self.name(head)


def _item_lines(
    items: list[Item], out: list[tuple[str | None, str]] | None = None
) -> list[tuple[str | None, str]]:
    """(label, text) of every item, nested ones after their parent; appended to ``out`` when given."""
    if out is None:
        out = []
    for it in items:
        out.append((it.label, it.text))
        if it.items:
            _item_lines(it.items, out)
    return out


def extract_names(sections: list[Section], title: str | None, code: str | None = None) -> Names:
    """Names from the first ``name`` section (or none), falling back to ``title`` for the name."""
    col = _Collector(code)
    section = None
    for s in sections:
        if s.key == "name":
            section = s
            break
    if section is not None:
        lines: list[tuple[str | None, str]] = []
        for para in (section.text or "").split("\n\n"):
            lines.extend([(None, ln) for ln in para.split("\n") if ln.strip()])
        _item_lines(section.items, lines)
        for sub in section.subsections:
            body = [sub.text] if sub.text else []
            body += [f"{i.label}: {i.text}" if i.label else i.text for i in sub.items]
            if _label_kind(sub.heading):
                lines.append((sub.heading, ", ".join(b for b in body if b)))
            else:
                lines.extend((None, b) for b in body)
        for label, text in lines:
            if label and col.labelled(label, text):
                continue
            col.line(f"{label}: {text}" if label else text)
    if col.names.procedure_name is None and title:
        col.names.procedure_name = _tidy(strip_codes(title, code)) or None
    return col.names
