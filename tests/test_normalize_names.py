"""The name block in its many written forms -> procedure_name, common_names, technical_term."""

from __future__ import annotations

import random

import pytest

from pipeline.normalize.names import Names, extract_names, strip_codes
from schemas.models import Item, Section, Subsection

TITLE = "Wrist splint, prefabricated, includes fitting"


def name_section(
    text: str | None = None, items: list[Item] | None = None, subsections: list[Subsection] | None = None
) -> list[Section]:
    return [
        Section(
            key="name",
            heading="Name of the Procedure",
            text=text,
            items=items or [],
            subsections=subsections or [],
        )
    ]


CASES: list[tuple[str, list[Section], Names]] = [
    (
        "name on its own line",
        name_section("Wrist Splint Fitting"),
        Names("Wrist Splint Fitting", [], None),
    ),
    (
        "name then labelled lines",
        name_section(
            "Wrist Splint Fitting\n\nCommon Names: Wrist brace, Hand splint\n\nMedical Term: Carpal orthosis"
        ),
        Names("Wrist Splint Fitting", ["Wrist brace", "Hand splint"], "Carpal orthosis"),
    ),
    (
        "labelled bullets only: the title is the name",
        name_section(
            items=[
                Item(text="Wrist Brace", label="Common Name"),
                Item(text="Carpal Orthosis, Prefabricated", label="Technical/Medical Term"),
            ]
        ),
        Names(TITLE, ["Wrist Brace"], "Carpal Orthosis, Prefabricated"),
    ),
    (
        "a singular common name keeps its commas and semicolons",
        name_section(items=[Item(text="Wrist support; brace for sprains", label="Common Name")]),
        Names(TITLE, ["Wrist support; brace for sprains"], None),
    ),
    (
        "everything on one line",
        name_section(
            "Wrist splinting, 20 minutes Common name(s): Wrist brace, Hand splint "
            "Medical term: Carpal orthosis"
        ),
        Names("Wrist splinting, 20 minutes", ["Wrist brace", "Hand splint"], "Carpal orthosis"),
    ),
    (
        "common names in parentheses on their own line",
        name_section("Wrist Splint Fitting\n\n(Common names: wrist brace, hand splint, or cock-up splint)"),
        Names("Wrist Splint Fitting", ["wrist brace", "hand splint", "cock-up splint"], None),
    ),
    (
        "an acronym in parentheses",
        name_section("Wrist Hand Orthosis (WHO)"),
        Names("Wrist Hand Orthosis", ["WHO"], None),
    ),
    (
        "parentheses inside the name stay",
        name_section("Wrist Orthosis (Prefabricated) with Fitting"),
        Names("Wrist Orthosis (Prefabricated) with Fitting", [], None),
    ),
    (
        "a sentence with 'commonly referred to as' and a technical term with a code",
        name_section(
            "Wrist Support Splints, commonly referred to as Wrist Braces. "
            "Technical term: Prefabricated Wrist Orthosis (HCPCS Code: L3908)."
        ),
        Names("Wrist Support Splints", ["Wrist Braces"], "Prefabricated Wrist Orthosis"),
    ),
    (
        "'commonly known as' on a second line",
        name_section(
            "Splinting of the wrist\n\nCommonly known as wrist bracing, hand splinting, or wrist taping."
        ),
        Names("Splinting of the wrist", ["wrist bracing", "hand splinting", "wrist taping"], None),
    ),
    (
        "'also known as' in parentheses with a code",
        name_section("Wrist Orthosis, Prefabricated (also known as QuickWrap, HCPCS code L3908)."),
        Names("Wrist Orthosis, Prefabricated", ["QuickWrap"], None),
    ),
    (
        "a code after the name",
        name_section("Wrist Orthosis, Prefabricated (L3908)\n\nCommon Names: Wrist brace"),
        Names("Wrist Orthosis, Prefabricated", ["Wrist brace"], None),
    ),
    (
        "a code in a technical term list",
        name_section(
            items=[Item(text="Carpal orthosis, Wrist orthosis, L3908", label="Technical/Medical Terms")]
        ),
        Names(TITLE, [], "Carpal orthosis, Wrist orthosis"),
    ),
    (
        "a trailing period is dropped",
        name_section("Fitting of a prefabricated wrist splint."),
        Names("Fitting of a prefabricated wrist splint", [], None),
    ),
    (
        "labels as a bare-label subsection",
        name_section(
            "Wrist Splint Fitting",
            subsections=[
                Subsection(heading="Common Names", items=[Item(text="Wrist brace"), Item(text="Hand splint")])
            ],
        ),
        Names("Wrist Splint Fitting", ["Wrist brace", "Hand splint"], None),
    ),
    (
        "a name line with an unknown label stays whole",
        name_section("Wrist Care: Splint Fitting for Sprains"),
        Names("Wrist Care: Splint Fitting for Sprains", [], None),
    ),
    (
        "no name section at all",
        [Section(key="summary", heading="Summary", text="A splint is fitted.")],
        Names(TITLE, [], None),
    ),
]


@pytest.mark.parametrize(("sections", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_name_block_forms(sections: list[Section], expected: Names) -> None:
    assert extract_names(sections, TITLE, "L3908") == expected


def test_no_title_and_no_name_leaves_the_name_empty() -> None:
    assert extract_names([], None, "L3908").procedure_name is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Splint (L3908)", "Splint"),
        ("Splint (HCPCS Code: L3908)", "Splint"),
        ("Splint (HCPCS L3908)", "Splint"),
        ("Splint (also known as Wrap, HCPCS code L3908)", "Splint (also known as Wrap)"),
        ("Splint, L3908", "Splint"),
    ],
)
def test_code_mentions_are_removed_from_names(text: str, expected: str) -> None:
    assert strip_codes(text, "L3908") == expected


_FRAGMENTS = [
    "Knee Orthosis", "(KO)", "Common names:", "Other names", "Medical Term:", "technical term", "Name:",
    "also known as", "a.k.a.", "aka", "commonly referred to as", "called", "(L3908)", "l3908", "L3908",
    "(HCPCS Code: L3908)", "HCPCS code L3908", "CPT code 63185", ",", ";", "or", "and", "(", ")", ".",
    "\u212anown as", "alſo", "Medıcal term:", "\u0130", "brace", "Wrist splint", "( , )", "Also known as:",
]  # fmt: skip


def test_pre_checks_change_no_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap keyword tests before the name patterns are shortcuts only: on random name blocks the
    names equal those found with every pattern run on every line."""
    from pipeline.normalize import names

    rnd = random.Random(7)
    cases = []
    for _ in range(1500):
        words = [rnd.choice(_FRAGMENTS) for _ in range(rnd.randint(1, 10))]
        items = [Item(text=rnd.choice(_FRAGMENTS), label=rnd.choice([None, "Common Names", "Also"]))]
        cases.append((" ".join(words), name_section(" ".join(words[::-1]), items)))
    fast = [(strip_codes(t, "L3908"), extract_names(s, t, "L3908")) for t, s in cases]
    monkeypatch.setattr(names, "may_contain", lambda text, words: True)
    full = [(strip_codes(t, "L3908"), extract_names(s, t, "L3908")) for t, s in cases]
    assert fast == full
    assert sum(1 for _, n in fast if n.common_names) > 300
