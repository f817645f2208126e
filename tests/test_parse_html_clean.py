"""``Document.clean_texts``: the HTML front end promises clean block texts, so normalize skips re-cleaning.

The promise must hold for any markup (both engines): every Paragraph text and every Item text and
label, nested ones too, equals ``clean()`` of itself. Pages are generated from fragments chosen to
break it: runs of blanks, newlines, tabs, NBSP and other Unicode spaces, bullets and numbers that
make marker lists, "Label:" items, bold and links around blanks, <br> and <pre> line breaks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.normalize.sections import build_outline
from pipeline.parse.document import Document, Item, ListBlock, Paragraph, clean
from pipeline.parse.html import ENGINES, parse_html

_FRAGMENTS = [
    " ", "  ", "\n", "\t", "\u00a0", "\u2028", "\u3000", "\x1f", "•", "• ", " • ", "- ", "1. ", "2) ", "·",
    "Risks:", "Common Names:", "Summary", "Preparation:", "bleeding", "a", "Word", ":", ".", "x  y",
    "<b>", "</b>", "<strong> ", "</strong>", "<br>", "<p>", "</p>", "<li>", "</li>", "<ul>", "</ul>",
    "<ol>", "</ol>", "<pre>", "</pre>", "<h2>", "</h2>", "<dt>", "<dd>", "<a href='/x'>", "</a>",
    '<span style="font-weight:bold">', "</span>", "<div>", "</div>", "&nbsp;", "&#9;", "&#10;",
]  # fmt: skip


def _texts(doc: Document) -> Iterator[str]:
    stack: list[Item] = []
    for b in doc.blocks:
        if isinstance(b, Paragraph):
            yield b.text
        elif isinstance(b, ListBlock):
            stack.extend(b.items)
    while stack:
        it = stack.pop()
        yield it.text
        if it.label is not None:
            yield it.label
        stack.extend(it.children)


def _page(body: str, region: bool) -> str:
    inner = f"<main>{body}</main>" if region else body
    return f"<html><head><title>t</title></head><body><nav>n</nav>{inner}</body></html>"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join),
    st.booleans(),
    st.sampled_from(ENGINES),
)
def test_html_documents_hold_only_clean_texts(body: str, region: bool, engine: str) -> None:
    doc = parse_html(_page(body, region), engine=engine)
    if not doc.blocks:
        return
    assert doc.clean_texts
    for text in _texts(doc):
        assert text == clean(text), repr(text)


@pytest.mark.parametrize("engine", ENGINES)
def test_outline_of_a_clean_document_equals_the_cleaning_one(engine: str) -> None:
    body = (
        "<h2>Summary</h2><p>Two  words\n here.</p><h2>Risks</h2>"
        "<ul><li><b>Common Risks:</b>  pain\t and  swelling</li>"
        "<li>Rare:<ul><li> a\u00a0b </li></ul></li></ul>"
    )
    doc = parse_html(_page(body, True), engine=engine)
    assert doc.clean_texts
    fast = build_outline(doc)
    doc.clean_texts = False
    slow = build_outline(doc)
    assert [d.to_section() for d in fast.drafts] == [d.to_section() for d in slow.drafts]
    assert fast.preamble == slow.preamble
