"""The intermediate Document every front end (HTML, text rendering, Markdown) produces.

A Document is the page with its markup forgotten: the title line, the code-system line, and a
flat sequence of blocks in page order. Section structure (which heading owns which blocks,
sub-headings, canonical keys) is decided later by ``pipeline.normalize``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

HeadingKind = Literal["h", "bold", "dt", "summary", "line", "label"]


@dataclass
class Item:
    """A list item. ``label`` is a leading "Label:" (colon stripped); ``text`` may be empty for a
    bare "Label:" bullet. ``href`` keeps the first link in the item (Similar Codes)."""

    text: str
    label: str | None = None
    children: list[Item] = field(default_factory=list)
    href: str | None = None


@dataclass
class Heading:
    """A heading candidate.

    ``level``: 1-6 for h1-h6; 2 for dt/summary and for a text line equal to a known heading;
    7 for a whole-bold paragraph; 8 for a short "Label:" line (a sub-heading candidate).
    ``kind`` says which form it took on the page.
    """

    text: str
    level: int
    kind: HeadingKind = "h"


@dataclass
class Paragraph:
    text: str
    href: str | None = None


@dataclass
class ListBlock:
    ordered: bool
    items: list[Item] = field(default_factory=list)


Block = Heading | Paragraph | ListBlock


@dataclass
class Document:
    """A parsed page. ``title``: the code title line; ``code_line``: e.g. "CPT4 code";
    ``blocks``: everything after them in page order (text before the first heading included)."""

    title: str | None = None
    code_line: str | None = None
    blocks: list[Block] = field(default_factory=list)
    #: extra facts a front end found: html <title>, canonical URL, breadcrumb, tag lines
    meta: dict[str, str] = field(default_factory=dict)
    #: True when the front end guarantees that every Paragraph text and every Item text and label
    #: (nested ones too) is already ``clean()`` (the HTML front end cleans each block it makes):
    #: normalize then does not clean them a second time. False (clean them) for anything else.
    clean_texts: bool = False


_LABEL = re.compile(r"^([A-Z][^:]{0,60}?):\s*(.*)$", re.S)
_WS = re.compile(r"\s+")


def clean(text: str) -> str:
    """Collapse runs of whitespace (NBSP included) into single spaces and strip.

    ``str.split()`` splits on exactly the characters regex ``\\s`` matches in a str pattern (both use
    ``str.isspace``, NBSP included), so this equals ``_WS.sub(" ", text).strip()`` at a third of the cost.
    """
    return " ".join(text.split())


def split_label(text: str) -> tuple[str | None, str]:
    """Split "Common Risks: bleeding" into ("Common Risks", "bleeding").

    A label is short (at most 8 words) and starts with a capital letter; anything else is
    returned as plain text (label None). A bare "Label:" returns ("Label", "").
    """
    # what ``_LABEL`` needs, tested first (most texts have no label): an A-Z, then a colon within 61
    if not ("A" <= text[:1] <= "Z") or text.find(":", 1, 62) < 0:
        return None, text
    m = _LABEL.match(text)
    if not m:
        return None, text
    label, rest = m.group(1).strip(), m.group(2).strip()
    if len(label.split()) > 8 or label.endswith(("http", "https")):
        return None, text
    return label, rest


#: The code-system line under the title ("CPT4 code", "HCPCS code", "ICD-10-PCS code", ...).
CODE_LINE = re.compile(
    r"^(?:CPT\s*4?|CPT®|HCPCS(?:\s+Level\s+II)?|ICD-?\s?10-?\s?(?:PCS|CM)|CDT)\s+codes?$", re.I
)
#: Site furniture that appears as a line of text in renderings and never belongs to a record.
CHROME_LINES = frozenset({"search all medical codes"})
#: The newer template's breadcrumb: "Codes / HCPCS / A4253".
BREADCRUMB = re.compile(r"^Codes\s*/\s*[^/]+(?:/\s*[^/]+)*$")
