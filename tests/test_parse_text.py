"""The text-rendering and Markdown front end: page text -> Document.

Unit tests use pages written here in our own words; the conformance tests read the real pages of
``../shared/corpus`` at test time (skipped when that folder is absent).
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from pipeline.parse import parse_document
from pipeline.parse.document import Block, Document, Heading, Item, ListBlock, Paragraph
from pipeline.parse.text import MAX_LIST_DEPTH, parse_markdown, parse_text

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
TOKEN = re.compile(r"[A-Za-z0-9]+")

BLANK_STYLE = """Search all medical codes

Ear canal rinse with warm saline; one or both ears

CPT4 code

Name of the Procedure:

Ear canal rinse (commonly called ear flushing)

Summary

A gentle rinse clears softened wax from the outer ear canal.

Indications

  • Blocked feeling in the ear
  • Wax seen on examination

  • Muffled hearing after swimming

Procedure Description

  1. The clinician looks into the ear with a lighted scope.
  2. Warm saline is squirted slowly along the canal wall.
  3. The ear is dried with a soft towel.

Duration

About ten minutes.
"""

NEWLINE_STYLE = """Ear canal rinse with warm saline; one or both ears
HCPCS code
Name of the Procedure
Ear canal rinse
Summary
A gentle rinse clears softened wax.
It takes a few minutes.
Preparation
- Soften the wax with drops for three days.
- Bring a list of medicines.
Patients with a perforated drum should say so first.
- Remove hearing aids before the visit.
"""


def headings(doc: Document) -> list[tuple[str, int, str]]:
    return [(b.text, b.level, b.kind) for b in doc.blocks if isinstance(b, Heading)]


def lists(doc: Document) -> list[ListBlock]:
    return [b for b in doc.blocks if isinstance(b, ListBlock)]


def paragraphs(doc: Document) -> list[str]:
    return [b.text for b in doc.blocks if isinstance(b, Paragraph)]


def texts(items: list[Item]) -> list[str]:
    return [i.text for i in items]


# -- the two real text styles --------------------------------------------------------------------


def test_blank_line_style_title_code_line_headings_and_lists() -> None:
    doc = parse_text(BLANK_STYLE)
    assert doc.title == "Ear canal rinse with warm saline; one or both ears"
    assert doc.code_line == "CPT4 code"
    assert headings(doc) == [
        ("Name of the Procedure:", 2, "line"),  # as written: normalize reads the colon form
        ("Summary", 2, "line"),
        ("Indications", 2, "line"),
        ("Procedure Description", 2, "line"),
        ("Duration", 2, "line"),
    ]
    bullets, steps = lists(doc)
    # the bullet list continues across the blank lines between its items
    assert not bullets.ordered
    assert texts(bullets.items) == [
        "Blocked feeling in the ear",
        "Wax seen on examination",
        "Muffled hearing after swimming",
    ]
    assert steps.ordered and len(steps.items) == 3
    assert steps.items[1].text == "Warm saline is squirted slowly along the canal wall."
    assert paragraphs(doc) == [
        "Ear canal rinse (commonly called ear flushing)",
        "A gentle rinse clears softened wax from the outer ear canal.",
        "About ten minutes.",
    ]


def test_chrome_title_and_code_line_never_become_blocks() -> None:
    doc = parse_text(BLANK_STYLE)
    flat = " ".join(str(b) for b in doc.blocks)
    assert "Search all medical codes" not in flat
    assert "CPT4 code" not in flat
    assert "warm saline; one or both" not in flat


def test_single_newline_style_each_line_is_a_paragraph_and_lists_end_at_text() -> None:
    doc = parse_text(NEWLINE_STYLE)
    assert doc.title == "Ear canal rinse with warm saline; one or both ears"
    assert doc.code_line == "HCPCS code"
    assert [h[0] for h in headings(doc)] == ["Name of the Procedure", "Summary", "Preparation"]
    assert paragraphs(doc) == [
        "Ear canal rinse",
        "A gentle rinse clears softened wax.",
        "It takes a few minutes.",
        "Patients with a perforated drum should say so first.",
    ]
    first, second = lists(doc)
    assert texts(first.items) == ["Soften the wax with drops for three days.", "Bring a list of medicines."]
    assert texts(second.items) == ["Remove hearing aids before the visit."]
    # block order: the paragraph sits between the two lists
    kinds = [type(b).__name__ for b in doc.blocks[-3:]]
    assert kinds == ["ListBlock", "Paragraph", "ListBlock"]


def test_known_heading_forms_indented_with_colon_or_hashes() -> None:
    page = (
        "A title\nCPT4 code\n    Procedure Description\n- step\n"
        "Risks & Complications:\n- soreness\n## Recovery\n"
    )
    doc = parse_text(page)
    assert headings(doc) == [
        ("Procedure Description", 2, "line"),
        ("Risks & Complications:", 2, "line"),
        ("Recovery", 2, "line"),
    ]


def test_mixed_markers_split_steps_from_bullets() -> None:
    page = "T\n\nProcedure Description\n\n  1. First step.\n  2. Second step.\n  • Tools: a small basin.\n"
    steps, bullets = lists(parse_text(page))
    assert steps.ordered and texts(steps.items) == ["First step.", "Second step."]
    assert not bullets.ordered and bullets.items[0].label == "Tools"


# -- nesting -------------------------------------------------------------------------------------


def test_nesting_by_indentation_three_levels_and_back() -> None:
    page = """T

Procedure Description

  • Numbing
    • Drops in the ear
      • Wait five minutes
    • Cotton plug
  • Rinsing
"""
    (lst,) = lists(parse_text(page))
    assert texts(lst.items) == ["Numbing", "Rinsing"]
    numbing = lst.items[0]
    assert texts(numbing.children) == ["Drops in the ear", "Cotton plug"]
    assert texts(numbing.children[0].children) == ["Wait five minutes"]
    assert lst.items[1].children == []


def test_markdown_nesting_under_numbered_steps() -> None:
    page = (
        "# Title\n\n## Procedure Description\n\n1. Prepare\n   - warm the saline\n   - lay a towel\n2) Go\n"
    )
    (lst,) = lists(parse_markdown(page))
    assert lst.ordered
    assert texts(lst.items) == ["Prepare", "Go"]
    assert texts(lst.items[0].children) == ["warm the saline", "lay a towel"]


def test_deep_indentation_is_capped_not_recursed() -> None:
    page = "T\nProcedure Description\n" + "".join(" " * i + "- level\n" for i in range(2000))
    (lst,) = lists(parse_text(page))
    levels, node = 1, lst.items[0]
    while node.children:
        node = node.children[-1]
        levels += 1
    assert levels == MAX_LIST_DEPTH
    total, stack = 0, list(lst.items)
    while stack:
        it = stack.pop()
        total += 1
        stack.extend(it.children)
    assert total == 2000  # nothing dropped, only flattened


# -- labels --------------------------------------------------------------------------------------


def test_item_labels_short_long_and_bare() -> None:
    page = """T
Risks and Complications
- Common Risks: Mild ringing for an hour
- When the drum is already damaged by an old infection: water may enter the middle ear
- Rinse Technique:
- the nozzle points up: never straight in
"""
    (lst,) = lists(parse_text(page))
    common, long_label, bare, lower = lst.items
    assert (common.label, common.text) == ("Common Risks", "Mild ringing for an hour")
    assert long_label.label is None
    assert long_label.text.startswith("When the drum is already damaged")
    assert (bare.label, bare.text) == ("Rinse Technique", "")
    assert lower.label is None and lower.text == "the nozzle points up: never straight in"


def test_label_lines_become_label_headings_but_lead_ins_and_plain_lines_do_not() -> None:
    page = """T
Indications
The rinse is offered to people who have:
- Wax blocking the canal
Patient criteria:
- Adults and older children
Pre-procedure Instructions:
Medical Condition or Problem
Hardened ear wax
"""
    doc = parse_text(page)
    assert headings(doc) == [
        ("Indications", 2, "line"),
        ("Patient criteria", 8, "label"),
        ("Pre-procedure Instructions", 8, "label"),
    ]
    assert paragraphs(doc) == [
        "The rinse is offered to people who have:",
        "Medical Condition or Problem",
        "Hardened ear wax",
    ]


def test_markdown_leftover_heading_at_end_of_bullet_is_split_off() -> None:
    page = "T\nIndications\n- Wax that drops cannot soften ##### Patient Criteria\n- Adults only\n"
    doc = parse_text(page)
    first, second = lists(doc)
    assert texts(first.items) == ["Wax that drops cannot soften"]
    assert texts(second.items) == ["Adults only"]
    assert doc.blocks[-2] == Heading("Patient Criteria", 8, "label")


def test_sub_heading_run_into_previous_bullet_is_split_off() -> None:
    page = (
        "T\n\nRisks and Complications\n\n  • Brief dizziness.Rare Risks:\n"
        "  • A torn drum\n\n  • Pain.Benefits\n"
    )
    doc = parse_text(page)
    assert headings(doc) == [
        ("Risks and Complications", 2, "line"),
        ("Rare Risks", 8, "label"),
        ("Benefits", 2, "line"),
    ]
    assert [texts(b.items) for b in lists(doc)] == [["Brief dizziness."], ["A torn drum", "Pain."]]


# -- page templates and damage -------------------------------------------------------------------


def test_breadcrumb_template_keeps_breadcrumb_title_prefix_and_tag_line() -> None:
    page = """Codes / HCPCS / A9999

A9999 Ear rinse bulb syringe, each

HCPCS code

HCPCSDMEPOS

Name of the Procedure:

  • Common Name: Bulb syringe
"""
    doc = parse_text(page)
    assert doc.meta["breadcrumb"] == "Codes / HCPCS / A9999"
    assert doc.title == "A9999 Ear rinse bulb syringe, each"
    assert doc.code_line == "HCPCS code"
    assert doc.blocks[0] == Paragraph("HCPCSDMEPOS")
    assert doc.blocks[1] == Heading("Name of the Procedure:", 2, "line")


def test_truncated_page_keeps_cut_words_and_cut_heading_as_text() -> None:
    page = "Ear rinse with warm sal\nCPT4 code\nIndications\n- Wax blocking the ca\nRisks and Compl"
    doc = parse_text(page)
    assert doc.title == "Ear rinse with warm sal"
    assert texts(lists(doc)[0].items) == ["Wax blocking the ca"]
    assert doc.blocks[-1] == Paragraph("Risks and Compl")


def test_page_ending_on_a_heading_without_newline() -> None:
    doc = parse_text("T\n\nPatient Experience\n\nMostly painless.\n\nSimilar Codes")
    assert doc.blocks[-1] == Heading("Similar Codes", 2, "line")


def test_similar_codes_lines_are_kept_as_blocks() -> None:
    doc = parse_text(
        "T\nSimilar Codes\n69209 Removal of impacted wax by irrigation\n69210 Removal of wax, tools\n"
    )
    assert paragraphs(doc) == [
        "69209 Removal of impacted wax by irrigation",
        "69210 Removal of wax, tools",
    ]


def test_page_without_title_starts_with_its_body() -> None:
    doc = parse_text("Summary\nA rinse for the ear.\n")
    assert doc.title is None
    assert doc.blocks[0] == Heading("Summary", 2, "line")


def test_code_line_before_title_and_empty_input() -> None:
    doc = parse_text("\ufeffCPT code\nEar rinse\nSummary\nText.\n")
    assert (doc.code_line, doc.title) == ("CPT code", "Ear rinse")
    empty = parse_text("   \n\n")
    assert empty.title is None and empty.blocks == []


def test_empty_bullets_and_rules_carry_nothing() -> None:
    doc = parse_text("T\nIndications\n- Wax\n-\n•\n* * *\n- More wax\n")
    assert [texts(b.items) for b in lists(doc)] == [["Wax", "More wax"]]


# -- Markdown ------------------------------------------------------------------------------------

MARKDOWN = """# 69209 Ear wax removal by **irrigation**

*CPT code*

## Name of the Procedure

Ear irrigation, also called *ear syringing*.

## Summary
Warm water loosens wax, see [the leaflet](https://example.org/leaflet) for details.

### What the nurse checks

**Before you come**

- **Soften** the wax with olive oil drops.
* Use `two drops` twice a day.

```
# not a heading
- not an item
```

| Step | Time |
|------|------|
| Rinse | 5 min |

Aftercare notes
---------------

> Keep the ear dry for a day.

## Similar Codes

- [69210 Wax removal with instruments](/code/cpt4/69210)
"""


def test_markdown_headings_title_and_code_line() -> None:
    doc = parse_markdown(MARKDOWN)
    assert doc.title == "69209 Ear wax removal by irrigation"
    assert doc.code_line == "CPT code"
    assert headings(doc) == [
        ("Name of the Procedure", 2, "h"),
        ("Summary", 2, "h"),
        ("What the nurse checks", 3, "h"),
        ("Before you come", 7, "bold"),
        ("Aftercare notes", 2, "h"),
        ("Similar Codes", 2, "h"),
    ]


def test_markdown_inline_markup_is_stripped_and_links_keep_href() -> None:
    doc = parse_markdown(MARKDOWN)
    paras = [b for b in doc.blocks if isinstance(b, Paragraph)]
    assert paras[0].text == "Ear irrigation, also called ear syringing."
    assert paras[1].text == "Warm water loosens wax, see the leaflet for details."
    assert paras[1].href == "https://example.org/leaflet"
    care, similar = lists(doc)
    assert texts(care.items) == ["Soften the wax with olive oil drops.", "Use two drops twice a day."]
    assert similar.items[0] == Item("69210 Wax removal with instruments", href="/code/cpt4/69210")


def test_markdown_fences_tables_and_quotes_are_kept_as_text() -> None:
    texts_ = paragraphs(parse_markdown(MARKDOWN))
    assert "# not a heading" in texts_ and "- not an item" in texts_
    assert "Step | Time" in texts_ and "Rinse | 5 min" in texts_
    assert "Keep the ear dry for a day." in texts_


def test_markdown_headings_keep_a_written_colon() -> None:
    doc = parse_markdown(
        "# T\n\n## Procedure Description\n\n**Anesthesia:**\n\n**Tools**:\n\n### Recovery:\n"
    )
    assert headings(doc) == [
        ("Procedure Description", 2, "h"),
        ("Anesthesia:", 7, "bold"),
        ("Tools:", 7, "bold"),
        ("Recovery:", 3, "h"),
    ]


def test_markdown_front_matter_goes_to_meta() -> None:
    doc = parse_markdown('---\nsource: "our own notes"\ncode: 69209\n---\n# Ear rinse\n\n## Summary\n')
    assert doc.meta == {"source": "our own notes", "code": "69209"}
    assert doc.title == "Ear rinse"
    assert doc.blocks == [Heading("Summary", 2, "h")]


def test_markdown_unknown_hash_heading_in_text_mode_is_only_a_label() -> None:
    doc = parse_text("T\n### Things to bring\n#### Recovery\n")
    assert headings(doc) == [("Things to bring", 8, "label"), ("Recovery", 2, "line")]


def test_parse_document_routes_text_and_markdown() -> None:
    assert parse_document("T\nCPT4 code\n## Summary\n", "text").blocks == [Heading("Summary", 2, "line")]
    assert parse_document("T\nCPT4 code\n## Summary\n", "markdown").blocks == [Heading("Summary", 2, "h")]


def test_hostile_long_lines_parse_completely() -> None:
    """Inputs that make naive regexes backtrack: they must finish and keep their words."""
    n = 200_000
    for page in ("- " + "[x" * n, "T\n- " + "a.B" * n + "x:", "x" + " #y" * n, "T\n" + "**a_" * n):
        for parse in (parse_text, parse_markdown):
            doc = parse(page)
            words = sum(len(TOKEN.findall(s)) for s in _strings(doc))
            assert words >= n


# -- conformance over the real corpus ------------------------------------------------------------


def _strings(doc: Document) -> list[str]:
    out = [doc.title or "", doc.code_line or "", *doc.meta.values()]
    stack: list[Block | Item] = list(doc.blocks)
    while stack:
        b = stack.pop()
        if isinstance(b, (Heading, Paragraph)):
            out.append(b.text)
        elif isinstance(b, ListBlock):
            stack.extend(b.items)
        else:
            out += [b.text, b.label or ""]
            stack.extend(b.children)
    return out


def _count_items(items: list[Item]) -> int:
    """Bullet items, nested children included, bare "Label:" items not."""
    n, stack = 0, list(items)
    while stack:
        it = stack.pop()
        n += bool(it.text or not it.label)
        stack.extend(it.children)
    return n


def _expected() -> list[dict]:
    if not (CORPUS / "expected.jsonl").exists():
        pytest.skip(f"real-page corpus not found at {CORPUS} (needs ../shared/corpus beside the repo)")
    return [json.loads(line) for line in (CORPUS / "expected.jsonl").read_text().splitlines() if line]


def _is_heading(block: Block, text: str) -> bool:
    return isinstance(block, Heading) and (block.level, block.kind, block.text.rstrip(":")) == (
        2,
        "line",
        text,
    )


def conformance() -> tuple[int, list[str]]:
    """Parse every expected page; returns (pages checked, failure messages)."""
    fails: list[str] = []
    rows = _expected()
    for e in rows:
        doc = parse_text((CORPUS / e["path"]).read_text(encoding="utf-8"))
        name = e["path"]
        if doc.title != e["title"]:
            fails.append(f"{name}: title {doc.title!r} != {e['title']!r}")
        pos, i = [], 0
        for s in e["sections"]:
            while i < len(doc.blocks) and not _is_heading(doc.blocks[i], s["heading"]):
                i += 1
            pos.append(i)
            i += 1
        if any(p >= len(doc.blocks) for p in pos):
            fails.append(f"{name}: headings not all found in order: {[s['heading'] for s in e['sections']]}")
            continue
        for k, s in enumerate(e["sections"]):
            end = pos[k + 1] if k + 1 < len(pos) else len(doc.blocks)
            got = sum(_count_items(b.items) for b in doc.blocks[pos[k] + 1 : end] if isinstance(b, ListBlock))
            if got != s["items"]:
                fails.append(f"{name}: {s['heading']} has {got} items, page has {s['items']}")
    return len(rows), fails


def test_conformance_titles_headings_and_item_counts_on_real_pages() -> None:
    n, fails = conformance()
    assert n >= 30
    assert fails == []


def test_conformance_no_content_word_lost_on_real_pages() -> None:
    """Every word of every corpus page is in the Document except chrome and the numbers of
    numbered steps (the ordered flag stands for them)."""
    _expected()
    lost: dict[str, dict[str, int]] = {}
    for path in sorted((CORPUS / "pages").rglob("*.txt")):
        text = path.read_text(encoding="utf-8")
        body = [ln for ln in text.splitlines() if ln.strip() != "Search all medical codes"]
        body = [re.sub(r"^\s*\d{1,3}[.)]\s+", "", ln) for ln in body]
        page = collections.Counter(t.lower() for t in TOKEN.findall(" ".join(body)))
        have = collections.Counter(t.lower() for t in TOKEN.findall(" ".join(_strings(parse_text(text)))))
        missing = {t: c - have[t] for t, c in page.items() if have[t] < c}
        if missing:
            lost[path.name] = missing
    assert lost == {}
