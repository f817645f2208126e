"""Sections: headings to canonical keys, sub-headings to subsections, lists to items, nothing dropped."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.normalize.sections import build_sections, is_bare_label, section_item_count
from pipeline.parse.document import Document, Heading, ListBlock, Paragraph
from pipeline.parse.document import Item as DocItem
from schemas.models import Item, Section

JUDGE = Path(__file__).resolve().parents[1].parent / "shared" / "judge" / "judge.py"


def doc(*blocks: object, title: str = "Knee brace fitting", code_line: str | None = "HCPCS code") -> Document:
    return Document(title=title, code_line=code_line, blocks=list(blocks))  # type: ignore[arg-type]


def H(text: str, level: int = 2, kind: str = "line") -> Heading:  # noqa: N802
    return Heading(text, level, kind)  # type: ignore[arg-type]


def UL(*items: DocItem, ordered: bool = False) -> ListBlock:  # noqa: N802
    return ListBlock(ordered, list(items))


def I(text: str, label: str | None = None, *children: DocItem) -> DocItem:  # noqa: E743, N802
    return DocItem(text, label, list(children))


def keys(sections: list[Section]) -> list[tuple[str, str]]:
    return [(s.key, s.heading) for s in sections]


def test_known_headings_open_sections_with_canonical_keys_and_the_heading_as_written() -> None:
    _, secs = build_sections(
        doc(
            H("Name of the Procedure:"),
            Paragraph("Knee brace fitting"),
            H("Risks & Complications"),
            UL(I("Skin rub")),
            H("Tools, Equipment, and Technology Used"),
            Paragraph("A tape measure."),
        )
    )
    assert keys(secs) == [
        ("name", "Name of the Procedure"),
        ("risks", "Risks & Complications"),
        ("equipment", "Tools, Equipment, and Technology Used"),
    ]


def test_paragraphs_become_text_and_lists_become_labelled_nested_items() -> None:
    _, secs = build_sections(
        doc(
            H("Purpose"),
            Paragraph("First thought."),
            Paragraph("Second thought."),
            UL(I("Steadies the joint", "Goals", I("less wobble"), I("less pain")), I("Plain bullet")),
        )
    )
    s = secs[0]
    assert s.text == "First thought.\n\nSecond thought."
    assert s.items == [
        Item(
            text="Steadies the joint", label="Goals", items=[Item(text="less wobble"), Item(text="less pain")]
        ),
        Item(text="Plain bullet"),
    ]


def test_unknown_deeper_heading_is_a_subsection() -> None:
    _, secs = build_sections(
        doc(
            H("Indications", 2, "h"),
            UL(I("Loose knee")),
            H("Who qualifies", 3, "h"),
            UL(I("Adults"), I("Athletes")),
        )
    )
    assert keys(secs) == [("indications", "Indications")]
    assert secs[0].subsections[0].heading == "Who qualifies"
    assert [i.text for i in secs[0].subsections[0].items] == ["Adults", "Athletes"]


@pytest.mark.parametrize("kind,level", [("bold", 7), ("label", 8)])
def test_unknown_bold_or_label_heading_is_a_subsection(kind: str, level: int) -> None:
    _, secs = build_sections(
        doc(
            H("Risks and Complications"),
            H("Frequent ones", level, kind),
            UL(I("Itching")),
            H("Seldom seen", level, kind),
            UL(I("Nerve irritation")),
        )
    )
    assert [(s.heading, [i.text for i in s.items]) for s in secs[0].subsections] == [
        ("Frequent ones", ["Itching"]),
        ("Seldom seen", ["Nerve irritation"]),
    ]


def test_unknown_colon_line_under_a_plain_heading_is_a_subsection() -> None:
    _, secs = build_sections(doc(H("Preparation"), H("Before the visit:", 2, "line"), UL(I("Shave the leg"))))
    assert secs[0].subsections[0].heading == "Before the visit"


def test_unknown_heading_at_the_same_level_or_before_any_section_is_an_other_section() -> None:
    _, secs = build_sections(
        doc(
            H("About this site", 2, "h"),
            Paragraph("We explain codes."),
            H("Summary", 2, "h"),
            Paragraph("A brace is fitted."),
            H("Price list", 2, "h"),
            Paragraph("Ask your insurer."),
        )
    )
    assert keys(secs) == [("other", "About this site"), ("summary", "Summary"), ("other", "Price list")]
    assert secs[2].text == "Ask your insurer."


def test_a_vocabulary_label_under_a_section_is_a_subsection_not_a_new_section() -> None:
    _, secs = build_sections(
        doc(
            H("Procedure Description"),
            UL(I("The leg is measured.")),
            Paragraph("It takes minutes."),
            H("Tools and Equipment:"),
            UL(I("Tape measure"), I("Brace")),
            H("Anesthesia:"),
            UL(I("None is used.")),
            H("Duration"),
            Paragraph("Ten minutes."),
        )
    )
    assert keys(secs) == [("procedure_description", "Procedure Description"), ("duration", "Duration")]
    assert [s.heading for s in secs[0].subsections] == ["Tools and Equipment", "Anesthesia"]
    assert section_item_count(secs[0]) == 4


def test_a_vocabulary_heading_deeper_than_the_section_is_a_subsection() -> None:
    _, secs = build_sections(
        doc(H("Procedure Description", 2, "h"), H("Anesthesia", 3, "h"), Paragraph("Local."))
    )
    assert keys(secs) == [("procedure_description", "Procedure Description")]
    assert secs[0].subsections[0].heading == "Anesthesia"


def test_a_vocabulary_heading_in_the_same_form_opens_a_section() -> None:
    _, secs = build_sections(
        doc(
            H("Procedure Description", 2, "h"),
            Paragraph("Steps."),
            H("Anesthesia", 2, "h"),
            Paragraph("Local."),
        )
    )
    assert keys(secs) == [("procedure_description", "Procedure Description"), ("anesthesia", "Anesthesia")]


def test_a_template_heading_opens_a_section_even_as_a_colon_line() -> None:
    _, secs = build_sections(
        doc(
            H("Procedure Description"),
            UL(I("Talk.")),
            H("Tools, Equipment & Technology:"),
            UL(I("A quiet room"), I("Notebook")),
        )
    )
    assert keys(secs) == [
        ("procedure_description", "Procedure Description"),
        ("equipment", "Tools, Equipment & Technology"),
    ]
    assert len(secs[1].items) == 2


def test_a_heading_like_bullet_stays_an_item_of_its_section() -> None:
    _, secs = build_sections(
        doc(
            H("Procedure Description"),
            UL(I("The vaccine is drawn up.", "Preparation"), I("It is injected.", "Administration")),
        )
    )
    assert keys(secs) == [("procedure_description", "Procedure Description")]
    assert [(i.label, i.text) for i in secs[0].items] == [
        ("Preparation", "The vaccine is drawn up."),
        ("Administration", "It is injected."),
    ]


def test_a_bare_label_bullet_with_children_becomes_a_subsection() -> None:
    _, secs = build_sections(
        doc(
            H("Risks and Complications"),
            UL(I("", "Common Risks", I("Itching"), I("Redness")), I("", "Rare Risks", I("Allergy"))),
        )
    )
    s = secs[0]
    assert s.items == []
    assert [(x.heading, [i.text for i in x.items]) for x in s.subsections] == [
        ("Common Risks", ["Itching", "Redness"]),
        ("Rare Risks", ["Allergy"]),
    ]
    assert section_item_count(s) == 3


def test_a_flattened_bare_label_takes_the_following_bullets_up_to_the_next_bare_label() -> None:
    _, secs = build_sections(
        doc(
            H("Procedure Description"),
            UL(
                I("Patient sits down."),
                I("", "Step-by-Step"),
                I("The knee is measured.", "Measuring"),
                I("The brace is adjusted.", "Fitting"),
                I("Walking steps:"),
                I("A few steps with the brace."),
            ),
        )
    )
    s = secs[0]
    assert [i.text for i in s.items] == ["Patient sits down."]
    assert [(x.heading, len(x.items)) for x in s.subsections] == [("Step-by-Step", 2), ("Walking steps", 1)]
    assert s.subsections[0].items[0].label == "Measuring"
    assert section_item_count(s) == 4


def test_a_bare_label_left_open_collects_the_next_blocks_of_its_section() -> None:
    _, secs = build_sections(
        doc(
            H("Preparation"),
            UL(I("Bring shoes."), I("", "Tests")),
            UL(I("Knee X-ray")),
            H("Duration"),
            Paragraph("Ten minutes."),
        )
    )
    assert [(x.heading, [i.text for i in x.items]) for x in secs[0].subsections] == [
        ("Tests", ["Knee X-ray"])
    ]


def test_a_nested_bare_label_is_promoted_to_a_subsection() -> None:
    _, secs = build_sections(
        doc(H("Recovery"), UL(I("Rest the leg", None, I("", "At home"), I("Ice packs"))))
    )
    s = secs[0]
    assert s.items == [Item(text="Rest the leg")]
    assert [(x.heading, [i.text for i in x.items]) for x in s.subsections] == [("At home", ["Ice packs"])]


@pytest.mark.parametrize(
    ("item", "bare"),
    [
        (I("", "Common Risks"), True),
        (I("Step-by-step:"), True),
        (I("Things the surgeon checks before closing the wound:"), False),
        (I("Bleeding", "Common Risks"), False),
        (I("Bleeding"), False),
    ],
)
def test_bare_label_rule_matches_the_judges(item: DocItem, bare: bool) -> None:
    assert is_bare_label(item) is bare


def test_preamble_keeps_text_before_the_first_heading_but_not_title_code_line_chrome_or_breadcrumb() -> None:
    pre, secs = build_sections(
        doc(
            Paragraph("Codes / HCPCS / K0901"),
            Paragraph("Search all medical codes"),
            Paragraph("Knee brace fitting"),
            Paragraph("HCPCS code"),
            Paragraph("Knee Brace Procedure (HCPCS K0901)"),
            Paragraph("HCPCSDMEPOS"),
            UL(I("Off the shelf", "Kind", I("one size")), I("Adjustable")),
            H("Summary"),
            Paragraph("A brace."),
        )
    )
    assert pre == [
        "Knee Brace Procedure (HCPCS K0901)",
        "HCPCSDMEPOS",
        "Kind: Off the shelf",
        "one size",
        "Adjustable",
    ]
    assert keys(secs) == [("summary", "Summary")]


def test_duplicate_headings_give_two_sections_in_page_order() -> None:
    _, secs = build_sections(
        doc(
            H("Summary"),
            Paragraph("First."),
            H("Purpose"),
            Paragraph("Why."),
            H("Summary"),
            Paragraph("Second."),
        )
    )
    assert keys(secs) == [("summary", "Summary"), ("purpose", "Purpose"), ("summary", "Summary")]
    assert [s.text for s in secs] == ["First.", "Why.", "Second."]


def test_a_heading_repeating_the_title_before_any_section_is_not_a_section() -> None:
    _, secs = build_sections(doc(H("Knee brace fitting", 1, "h"), H("Summary", 2, "h"), Paragraph("Hi.")))
    assert keys(secs) == [("summary", "Summary")]


_TOKEN = re.compile(r"[A-Za-z0-9]+")


def _words(x: object) -> list[str]:
    if isinstance(x, str):
        return [t.lower() for t in _TOKEN.findall(x)]
    if isinstance(x, dict):
        return [w for v in x.values() for w in _words(v)]
    if isinstance(x, list):
        return [w for v in x for w in _words(v)]
    return []


def _block_words(blocks: list[object]) -> list[str]:
    def item_words(it: DocItem) -> list[str]:
        return _words([it.label or "", it.text]) + [w for c in it.children for w in item_words(c)]

    out: list[str] = []
    for b in blocks:
        if isinstance(b, (Heading, Paragraph)):
            out += _words(b.text)
        elif isinstance(b, ListBlock):
            out += [w for it in b.items for w in item_words(it)]
    return out


def test_nothing_on_the_page_is_dropped() -> None:
    blocks: list[object] = [
        Paragraph("Opening remark."),
        H("Name of the Procedure:"),
        Paragraph("Knee bracing"),
        UL(I("Knee Brace", "Common Name"), I("Knee Orthosis", "Technical Term")),
        H("Procedure Description"),
        UL(
            I("", "Step-by-Step"),
            I("Measure", "Measuring"),
            I("Fit", "Fitting", I("strap one"), I("strap two")),
        ),
        Paragraph("Then walk."),
        H("Anesthesia:"),
        Paragraph("None needed."),
        H("Odd heading", 2, "h"),
        UL(I("odd bullet", None, I("", "Deep label"), I("deep bullet"))),
        H("Sub bit", 3, "h"),
        Paragraph("sub text"),
        H("Similar Codes"),
        UL(I("L1844 Custom brace")),
    ]
    pre, secs = build_sections(doc(*blocks))
    page = _block_words(blocks)
    kept = _words([pre, [s.model_dump() for s in secs]])
    missing = {w for w in page if page.count(w) > kept.count(w)}
    assert missing == set()


def _judge_count_items():  # the judge's own counter, when ../shared is beside the repo
    if not JUDGE.exists():
        pytest.skip(f"judge not found at {JUDGE}")
    sys.path.insert(0, str(JUDGE.parent))
    spec = importlib.util.spec_from_file_location("procpipe_judge", JUDGE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.count_items


def test_item_counts_agree_with_the_judges_counter() -> None:
    count_items = _judge_count_items()
    _, secs = build_sections(
        doc(
            H("Risks and Complications"),
            Paragraph("Lead-in:"),
            UL(I("A", None, I("a1"), I("a2", None, I("a2x")))),
            H("Common Risks:", 8, "label"),
            UL(I("B"), I("", "Group", I("c1"), I("c2")), I("Flat group:"), I("d1")),
        )
    )
    s = secs[0]
    assert section_item_count(s) == 8
    assert count_items(s.model_dump()) == 8


def test_a_loose_alias_line_under_a_template_section_is_a_subsection() -> None:
    _, secs = build_sections(
        doc(H("Recovery"), UL(I("Rest the wrist.")), H("Follow-up"), UL(I("A check in a week.")))
    )
    assert keys(secs) == [("recovery", "Recovery")]
    assert secs[0].subsections[0].heading == "Follow-up"


def test_a_loose_alias_line_opens_a_section_on_a_page_outside_the_template() -> None:
    _, secs = build_sections(doc(H("Overview"), Paragraph("A new knee."), H("Risks"), UL(I("Infection"))))
    assert keys(secs) == [("summary", "Overview"), ("risks", "Risks")]


def test_unknown_bold_heading_beside_bold_sections_opens_other_section() -> None:
    from pipeline.normalize.sections import build_sections
    from pipeline.parse.document import Document, Heading, Paragraph

    doc = Document(
        title="Sample injection",
        code_line="HCPCS code",
        blocks=[
            Heading("Summary", 7, "bold"),
            Paragraph("A short injection given in the clinic."),
            Heading("Billing Remarks", 7, "bold"),
            Paragraph("Billed once per visit."),
            Heading("Dose Notes:", 8, "label"),
            Paragraph("Weight based."),
        ],
    )
    _, sections = build_sections(doc)
    assert [(s.key, s.heading) for s in sections] == [("summary", "Summary"), ("other", "Billing Remarks")]
    assert [sub.heading for sub in sections[1].subsections] == ["Dose Notes"]


def test_sections_built_without_validation_equal_validated_ones() -> None:
    """The outline builds Item/Subsection/Section without pydantic validation (speed); what it builds
    must be exactly what validation would give: same values, types, fields set and JSON."""
    blocks: list[object] = [
        H("Procedure Description"),
        Paragraph("First  part."),
        Paragraph("Second\u00a0part."),
        UL(I("Measure", "Measuring"), I("Fit", "Fitting", I("strap one"), I("strap two")), I("Flat group:")),
        Paragraph("Then walk."),
        H("Details", 3, "h"),
        UL(I("", "Deep label", I("deep bullet"))),
    ]
    _, secs = build_sections(doc(*blocks))
    assert secs and secs[0].subsections and secs[0].items[1].items
    for s in secs:
        again = Section.model_validate(s.model_dump())
        assert again == s
        assert again.model_dump_json() == s.model_dump_json()
        assert again.model_fields_set == s.model_fields_set
        for mine, valid in zip(s.subsections, again.subsections, strict=True):
            assert type(mine) is type(valid) and mine.model_fields_set == valid.model_fields_set
        stack = list(zip(s.items, again.items, strict=True))
        while stack:
            mine_it, valid_it = stack.pop()
            assert type(mine_it) is Item and mine_it.model_fields_set == valid_it.model_fields_set
            assert isinstance(mine_it.text, str) and (mine_it.label is None or isinstance(mine_it.label, str))
            stack.extend(zip(mine_it.items, valid_it.items, strict=True))


def test_construct_matches_model_construct() -> None:
    from pipeline.normalize.sections import construct

    values: dict[str, Any] = {"label": "Risk", "text": "bleeding", "items": [Item(text="minor")]}
    mine, theirs = construct(Item, dict(values)), Item.model_construct(**values)
    assert mine == theirs == Item(**values)
    assert mine.model_fields_set == theirs.model_fields_set
    assert mine.__pydantic_extra__ == theirs.__pydantic_extra__
    assert mine.__pydantic_private__ == theirs.__pydantic_private__
    assert mine.model_dump_json() == Item(**values).model_dump_json()
