"""Parse stage: page text -> Document, one front end per markup (HTML, text rendering, Markdown)."""

from __future__ import annotations

from pipeline.parse.document import Block, Document, Heading, Item, ListBlock, Paragraph


def parse_document(text: str, kind: str) -> Document:
    """Parse decoded page text with the front end for ``kind`` ("html", "text" or "markdown")."""
    if kind == "html":
        from pipeline.parse.html import parse_html

        return parse_html(text)
    from pipeline.parse.text import parse_markdown, parse_text

    return parse_markdown(text) if kind == "markdown" else parse_text(text)


__all__ = ["Block", "Document", "Heading", "Item", "ListBlock", "Paragraph", "parse_document"]
