"""build_record: Document -> validated ProcedureRecord, its convenience fields, provenance and rejects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.errors import RejectedPage
from pipeline.normalize import build_record
from pipeline.normalize.record import parse_when
from pipeline.parse.document import Document, Heading, ListBlock, Paragraph
from pipeline.parse.document import Item as DocItem
from pipeline.version import parser_version
from schemas.models import ProcedureRecord, SimilarCode

SHA = "ab" * 32


def H(text: str, level: int = 2, kind: str = "line") -> Heading:  # noqa: N802
    return Heading(text, level, kind)  # type: ignore[arg-type]


def UL(*items: DocItem) -> ListBlock:  # noqa: N802
    return ListBlock(False, list(items))


def I(text: str, label: str | None = None, *children: DocItem, href: str | None = None) -> DocItem:  # noqa: E743, N802
    return DocItem(text, label, list(children), href)


def wrist_page() -> Document:
    """A page about fitting a wrist splint, in our own words."""
    return Document(
        title="L3908 Wrist splint, prefabricated, includes fitting",
        code_line="HCPCS code",
        blocks=[
            Paragraph("HCPCSDMEPOS"),
            H("Name of the Procedure:"),
            Paragraph("Wrist Splint Fitting"),
            UL(I("Wrist brace, Hand splint", "Common Names"), I("Carpal orthosis", "Medical Term")),
            H("Summary"),
            Paragraph("A ready-made splint is sized and strapped to the wrist."),
            H("Indications"),
            UL(I("Sprain", "Symptoms"), I("Tendon strain")),
            H("Preparation"),
            UL(I("No fasting is required.")),
            H("Procedure Description"),
            UL(I("The wrist is measured."), I("The splint is fitted.", None, I("straps tightened"))),
            H("Anesthesia:"),
            Paragraph("None required."),
            H("Duration"),
            Paragraph("About 15 minutes."),
            H("Setting"),
            Paragraph("An outpatient clinic or a therapist's office."),
            H("Risks and Complications"),
            H("Common Risks", 8, "label"),
            UL(I("Skin rubbing")),
            H("Recovery"),
            UL(I("Most people recover in 2 to 4 weeks.")),
            H("Summary"),
            Paragraph("A second summary heading on the same page."),
            H("Similar Codes"),
            UL(
                I("L3906 Wrist orthosis, custom made", href="/code/hcpcs/L3906-wrist-custom"),
                I("29125 Short arm splint application"),
                I("See more codes"),
            ),
        ],
    )


def build(
    doc: Document | None = None,
    *,
    url: str | None = "https://example.org/code/hcpcs/L3908-wrist-splint",
    path: str | None = "raw/ours/hcpcs/L3908.txt",
    **meta: Any,
) -> ProcedureRecord:
    return build_record(doc or wrist_page(), url=url, path=path, meta=meta, sha256=SHA, kind="text")


def test_record_identity_title_and_provenance() -> None:
    rec = build(fetched_at="2025-03-01T10:00:00Z", content_type="text/plain")
    assert (rec.record_id, rec.code_system, rec.code) == ("hcpcs:L3908", "hcpcs", "L3908")
    assert rec.title == "Wrist splint, prefabricated, includes fitting"
    assert rec.source.url == "https://example.org/code/hcpcs/L3908-wrist-splint"
    assert rec.source.path == "raw/ours/hcpcs/L3908.txt"
    assert rec.source.sha256 == SHA
    assert rec.source.fetched_at == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert rec.source.content_type == "text/plain"
    assert rec.parser_version == parser_version()
    assert rec.preamble == ["HCPCSDMEPOS"]


def test_record_sections_names_and_typed_fields() -> None:
    rec = build()
    assert [s.key for s in rec.sections] == [
        "name",
        "summary",
        "indications",
        "preparation",
        "procedure_description",
        "duration",
        "setting",
        "risks",
        "recovery",
        "summary",
        "similar_codes",
    ]
    assert rec.sections[4].subsections[0].heading == "Anesthesia"
    assert (rec.procedure_name, rec.common_names, rec.technical_term) == (
        "Wrist Splint Fitting",
        ["Wrist brace", "Hand splint"],
        "Carpal orthosis",
    )
    assert (rec.duration_minutes_min, rec.duration_minutes_max) == (15, 15)
    assert (rec.hospital_stay_days_min, rec.hospital_stay_days_max) == (0, 0)
    assert (rec.recovery_weeks_min, rec.recovery_weeks_max) == (2, 4)
    assert (rec.fasting_hours_min, rec.fasting_hours_max) == (0, 0)
    assert rec.anesthesia_types == ["none"]
    assert rec.care_settings == ["outpatient", "clinic"]


def test_convenience_fields_are_views_of_the_sections() -> None:
    rec = build()
    assert rec.summary == (
        "A ready-made splint is sized and strapped to the wrist.\n\n"
        "A second summary heading on the same page."
    )
    assert rec.indications == ["Symptoms: Sprain", "Tendon strain"]
    assert rec.procedure_description == [
        "The wrist is measured.",
        "The splint is fitted.",
        "straps tightened",
    ]
    assert rec.risks == ["Skin rubbing"]
    assert rec.duration == "About 15 minutes."
    assert rec.setting == "An outpatient clinic or a therapist's office."
    assert rec.anesthesia is None  # a sub-heading of Procedure Description, not a section of its own
    assert rec.alternatives == []


def test_list_field_falls_back_to_paragraphs_when_the_section_has_no_list() -> None:
    doc = Document(
        title="Splint",
        code_line="HCPCS code",
        blocks=[H("Indications"), Paragraph("Sprains of the wrist."), Paragraph("Tendon strain.")],
    )
    assert build(doc).indications == ["Sprains of the wrist.", "Tendon strain."]


def test_text_field_gets_items_as_lines() -> None:
    doc = Document(
        title="Splint",
        code_line="HCPCS code",
        blocks=[H("Duration"), UL(I("Less than 5 minutes.", "Typical Duration"))],
    )
    rec = build(doc)
    assert rec.duration == "Typical Duration: Less than 5 minutes."
    assert rec.duration_minutes_max == 5


def test_similar_codes_are_parsed_and_the_section_kept() -> None:
    rec = build()
    assert rec.similar_codes == [
        SimilarCode(
            code_system="hcpcs",
            code="L3906",
            title="Wrist orthosis, custom made",
            url="https://example.org/code/hcpcs/L3906-wrist-custom",
        ),
        SimilarCode(code_system="cpt", code="29125", title="Short arm splint application", url=None),
    ]
    similar = rec.sections[-1]
    assert similar.key == "similar_codes" and len(similar.items) == 3


def test_similar_code_system_defaults_to_the_pages_when_the_code_fits_it() -> None:
    doc = Document(
        title="Spine surgery",
        code_line="CPT4 code",
        blocks=[H("Similar Codes"), Paragraph("63190 Laminectomy with section of spinal accessory nerve")],
    )
    rec = build(doc, url="https://example.org/code/cpt4/63185-spine", path=None)
    assert rec.similar_codes == [
        SimilarCode(
            code_system="cpt", code="63190", title="Laminectomy with section of spinal accessory nerve"
        )
    ]


def test_a_diagnosis_page_is_rejected_naming_its_headings() -> None:
    doc = Document(
        title="Low back pain",
        code_line=None,
        blocks=[
            H("Name of the Condition"),
            Paragraph("Lumbago"),
            H("Causes"),
            Paragraph("Strain."),
            H("Symptoms"),
            Paragraph("Ache."),
            H("Treatment Options"),
            Paragraph("Rest."),
        ],
    )
    with pytest.raises(RejectedPage) as exc:
        build(doc, url="https://example.org/code/cpt4/99213-visit")
    assert (
        exc.value.reason == "not a procedure page (diagnosis page: Name of the Condition, Causes, Symptoms)"
    )
    assert exc.value.stage == "normalize"
    assert exc.value.detail == "cpt:99213"


def test_a_stray_diagnosis_like_sub_heading_does_not_reject_a_procedure_page() -> None:
    doc = wrist_page()
    doc.blocks.insert(12, H("Diagnosis", 8, "label"))
    assert build(doc).record_id == "hcpcs:L3908"


def test_an_icd10cm_page_is_rejected() -> None:
    with pytest.raises(RejectedPage, match=r"^not a procedure page \(ICD-10-CM diagnosis code M545\)$"):
        build(url="https://example.org/code/icd10cm/M54.5-low-back-pain", path=None)


def test_a_page_without_any_code_is_rejected() -> None:
    doc = Document(title="Wrist splints", blocks=[H("Summary"), Paragraph("Splints help.")])
    with pytest.raises(
        RejectedPage, match=r"^no procedure code found \(not in sidecar, URL, file path or page\)$"
    ):
        build(doc, url="https://example.org/articles/splints", path="raw/articles/splints.txt")


def test_sidecar_code_wins_over_the_url() -> None:
    rec = build(code_system="HCPCS Level II", code="l3906")
    assert rec.record_id == "hcpcs:L3906"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01T10:00:00Z", datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("2025-03-01 10:00:00", datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("Sat, 01 Mar 2025 10:00:00 GMT", datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        (1740823200, datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        ([2025], None),
    ],
)
def test_fetched_at_is_read_leniently(value: Any, expected: datetime | None) -> None:
    assert parse_when(value) == expected


def test_a_bad_fetched_at_does_not_reject_the_page() -> None:
    assert build(fetched_at="not a date").source.fetched_at is None


def test_deeply_nested_items_are_kept_flattened_below_the_depth_limit() -> None:
    from pipeline.normalize.sections import MAX_ITEM_DEPTH

    root = leaf = I("level 0")
    for n in range(1, 3000):
        child = I(f"level {n}")
        leaf.children.append(child)
        leaf = child
    doc = Document(title="Splint", code_line="HCPCS code", blocks=[H("Recovery"), UL(root)])
    rec = build(doc)
    depth, items = 0, rec.sections[0].items
    while items and items[0].items:
        depth, items = depth + 1, items[0].items
    assert depth == MAX_ITEM_DEPTH
    assert len(rec.recovery) == 3000
    assert rec.recovery[-1] == "level 2999"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("/code/cpt4/63190", "/code/cpt4/63190"),
        ("https://example.org/code/63190", "https://example.org/code/63190"),
        ("javascript:alert(1)", None),
        ("htt<ps://example.org/code/hcpcs/E0115", None),  # not a scheme: a first segment with ":"
        ("code:63190/x", None),
    ],
)
def test_similar_code_links_keep_only_web_links(href: str, expected: str | None) -> None:
    from pipeline.normalize.record import link_url

    assert link_url(href, None) == expected
