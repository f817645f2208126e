"""Code system and code resolution: sidecar, then URL, then file path, then the page itself."""

from __future__ import annotations

import pytest

from pipeline.errors import RejectedPage
from pipeline.normalize.codes import (
    canonical_system,
    from_path,
    from_url,
    normalize_code,
    resolve_code,
    strip_code_prefix,
    system_by_shape,
)
from pipeline.parse.document import Document, Heading, ListBlock, Paragraph
from pipeline.parse.document import Item as DocItem


def page(title: str | None = "Knee brace fitting", code_line: str | None = None, *blocks: object) -> Document:
    return Document(title=title, code_line=code_line, blocks=list(blocks))  # type: ignore[arg-type]


def resolve(doc: Document | None = None, url: str | None = None, path: str | None = None, **meta: object):
    return resolve_code(doc or page(), url=url, path=path, meta=meta)


@pytest.mark.parametrize(
    ("written", "system"),
    [
        ("cpt4", "cpt"),
        ("CPT", "cpt"),
        ("CPT®", "cpt"),
        ("CPT4 code", "cpt"),
        ("CPT® Code", "cpt"),
        ("hcpcs", "hcpcs"),
        ("HCPCS code", "hcpcs"),
        ("HCPCS Level II", "hcpcs"),
        ("icd10pcs", "icd10pcs"),
        ("ICD-10-PCS", "icd10pcs"),
        ("ICD-10-CM", "icd10cm"),
        ("cdt", "cdt"),
        ("snomed", None),
        ("", None),
    ],
)
def test_system_aliases_map_to_canonical_names(written: str, system: str | None) -> None:
    assert canonical_system(written) == system


def test_codes_are_upper_cased_and_integer_cpt_codes_get_their_zeros_back() -> None:
    assert normalize_code(" a4253 ") == "A4253"
    assert normalize_code(811, "cpt") == "00811"
    assert normalize_code("0sr9.019", "icd10pcs") == "0SR9019"


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("63185", "cpt"),
        ("0529F", "cpt"),
        ("A4253", "hcpcs"),
        ("D1110", "cdt"),
        ("0SR9019", "icd10pcs"),
        ("12", None),
    ],
)
def test_a_code_with_no_stated_system_is_placed_by_its_shape(code: str, system: str | None) -> None:
    assert system_by_shape(code) == system


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://genhealth.ai/code/cpt4/63185-laminectomy-with-rhizotomy", ("cpt", "63185")),
        ("http://genhealth.ai/code/cpt4/93350-echo-stress", ("cpt", "93350")),
        ("https://genhealth.ai/code/hcpcs/A4253", ("hcpcs", "A4253")),
        ("https://example.org/code/icd10pcs/0SR9019-replace-hip", ("icd10pcs", "0SR9019")),
        ("https://example.org/cpt/codes/43202", ("cpt", "43202")),
        ("/code/hcpcs/L1852?ref=list", ("hcpcs", "L1852")),
        ("https://genhealth.ai/code/hcpcs", ("hcpcs", None)),
        ("https://example.org/health/articles/knee", (None, None)),
    ],
)
def test_code_from_url_forms(url: str, expected: tuple[str | None, str | None]) -> None:
    assert from_url(url)[:2] == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("raw/genhealth/cpt4/63185-laminectomy.txt", ("cpt", "63185")),
        ("raw/ours/hcpcs/A4253.html", ("hcpcs", "A4253")),
        ("/tmp/raw/genhealth_cpt4_63185.txt", ("cpt", "63185")),
        ("raw/genhealth_cpt4_93350__http.txt", ("cpt", "93350")),
        ("raw/notes/knee.txt", (None, None)),
    ],
)
def test_code_from_file_path_forms(path: str, expected: tuple[str | None, str | None]) -> None:
    assert from_path(path)[:2] == expected


def test_sidecar_wins_over_url_path_and_page() -> None:
    doc = page("L1852 Knee brace", "HCPCS code")
    ref = resolve(
        doc, "https://x.org/code/hcpcs/A4253", "raw/s/hcpcs/A4255.txt", code_system="HCPCS", code="k0901"
    )
    assert (ref.code_system, ref.code, ref.code_origin) == ("hcpcs", "K0901", "sidecar")


def test_url_wins_over_path_and_page() -> None:
    doc = page("L1852 Knee brace", "HCPCS code")
    ref = resolve(doc, "https://x.org/code/hcpcs/A4253-strips", "raw/s/hcpcs/A4255.txt")
    assert (ref.code, ref.code_origin) == ("A4253", "URL")


def test_path_wins_over_page() -> None:
    ref = resolve(page("L1852 Knee brace", "HCPCS code"), None, "raw/s/hcpcs/A4255-platforms.txt")
    assert (ref.code, ref.code_origin) == ("A4255", "file path")


def test_sidecar_url_is_used_when_no_url_is_given() -> None:
    meta = {"url": "https://genhealth.ai/code/cpt4/99213-office-visit"}
    ref = resolve_code(page(), url=None, path=None, meta=meta)
    assert (ref.code_system, ref.code) == ("cpt", "99213")


def test_system_and_code_may_come_from_different_places() -> None:
    ref = resolve(page(code_line="CPT4 code"), None, "raw/misc/63185.txt", code="63185")
    assert (ref.code_system, ref.system_origin) == ("cpt", "page")


def test_page_title_prefix_gives_the_code() -> None:
    ref = resolve(page("A4253 Test strips for a home glucose meter, box of 50", "HCPCS code"))
    assert (ref.code_system, ref.code, ref.code_origin) == ("hcpcs", "A4253", "page")


def test_page_breadcrumb_gives_system_and_code() -> None:
    doc = page("Test strips", None)
    doc.meta["breadcrumb"] = "Codes / HCPCS / A4253"
    ref = resolve(doc)
    assert (ref.code_system, ref.code) == ("hcpcs", "A4253")


@pytest.mark.parametrize(
    "name_line",
    [
        "Knee support device fitting (G9920)",
        "Knee support device fitting (HCPCS Code: G9920)",
        "Knee support device fitting (HCPCS G9920)",
    ],
)
def test_page_code_in_parentheses_after_the_name(name_line: str) -> None:
    doc = page(
        "Knee support", "HCPCS code", Heading("Name of the Procedure:", 2, "line"), Paragraph(name_line)
    )
    assert resolve(doc).code == "G9920"


def test_page_extra_line_before_the_name_block_gives_the_code() -> None:
    doc = page(
        "Knee support",
        None,
        Paragraph("Medical HCPCS Procedure: knee support (G9920)"),
        Heading("Name of the Procedure", 2, "line"),
        Paragraph("Knee support"),
    )
    ref = resolve(doc)
    assert (ref.code_system, ref.code) == ("hcpcs", "G9920")


def test_page_code_mentioned_in_the_text() -> None:
    doc = page(
        "Esophagus scope",
        None,
        Heading("Summary", 2, "line"),
        Paragraph("The CPT® Code 43202 describes a flexible scope of the gullet with tissue sampling."),
    )
    ref = resolve(doc)
    assert (ref.code_system, ref.code) == ("cpt", "43202")


def test_a_canonical_url_found_on_the_page_is_evidence_too() -> None:
    doc = page()
    doc.meta["canonical"] = "https://genhealth.ai/code/cpt4/11102-skin-biopsy"
    assert resolve(doc).code == "11102"


def test_no_code_anywhere_is_rejected_with_the_places_looked() -> None:
    doc = page("Knee replacement", None, Heading("Overview", 2, "h"), Paragraph("A new knee joint of metal."))
    with pytest.raises(RejectedPage) as exc:
        resolve(doc, "https://example.org/articles/knee", "raw/nhs/x/knee.txt")
    assert exc.value.reason == "no procedure code found (not in sidecar, URL, file path or page)"
    assert exc.value.stage == "normalize"


@pytest.mark.parametrize(
    ("meta", "url", "reason"),
    [
        ({"code_system": "cpt", "code": "1234"}, None, "invalid cpt code '1234' (from sidecar)"),
        ({}, "https://x.org/code/hcpcs/Z99999-bogus", "invalid hcpcs code 'Z99999' (from URL)"),
        ({"code_system": "loinc", "code": "1234-5"}, None, "unknown code system 'loinc' (from sidecar)"),
    ],
)
def test_an_invalid_code_is_rejected_naming_it(meta: dict[str, object], url: str | None, reason: str) -> None:
    with pytest.raises(RejectedPage) as exc:
        resolve(page(), url, None, **meta)
    assert exc.value.reason == reason


def test_an_icd10cm_code_is_not_a_procedure() -> None:
    with pytest.raises(RejectedPage) as exc:
        resolve(page(), "https://genhealth.ai/code/icd10cm/M54.5-low-back-pain")
    assert exc.value.reason == "not a procedure page (ICD-10-CM diagnosis code M545)"


def test_a_list_item_mentioning_a_code_counts_as_page_text() -> None:
    doc = page(
        "Brace",
        None,
        Heading("Summary", 2, "line"),
        ListBlock(False, [DocItem("Billed as HCPCS code L1844 when custom made.")]),
    )
    assert resolve(doc).code == "L1844"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("A4253 Test strips, box of 50", "Test strips, box of 50"),
        ("A4253 - Test strips", "Test strips"),
        ("Test strips for A4253 meters", "Test strips for A4253 meters"),
        ("A42531 strips", "A42531 strips"),
        (None, None),
    ],
)
def test_title_loses_only_a_leading_copy_of_the_code(title: str | None, expected: str | None) -> None:
    assert strip_code_prefix(title, "A4253") == expected
