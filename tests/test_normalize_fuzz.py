"""Whatever Document a front end hands over, normalize returns a valid record or a one-line reject."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import RejectedPage
from pipeline.normalize import build_record
from pipeline.parse.document import Document, Heading, ListBlock, Paragraph
from pipeline.parse.document import Item as DocItem

_WORDS = st.sampled_from(
    [
        "Summary",
        "Purpose",
        "Risks:",
        "Anesthesia:",
        "Name of the Procedure",
        "Causes",
        "Symptoms",
        "2 to 4 hours",
        "fast for 8 hours",
        "general anesthesia",
        "(A4253)",
        "63185",
        "Common names:",
        "x",
        "",
        " ",
        "—",
        "Q9999",
        "HCPCS code L1844",
        "outpatient clinic",
        "less than 5 minutes",
        "Codes / HCPCS / A4253",
        "A4253 Strips",
    ]
)
_TEXT = st.lists(_WORDS, max_size=4).map(" ".join) | st.text(max_size=40)
_ITEMS = st.recursive(
    st.builds(DocItem, _TEXT, st.none() | _TEXT),
    lambda kids: st.builds(DocItem, _TEXT, st.none() | _TEXT, st.lists(kids, max_size=3)),
    max_leaves=12,
)
_BLOCK = st.one_of(
    st.builds(
        Heading, _TEXT, st.integers(1, 8), st.sampled_from(["h", "bold", "dt", "summary", "line", "label"])
    ),
    st.builds(Paragraph, _TEXT),
    st.builds(ListBlock, st.booleans(), st.lists(_ITEMS, max_size=4)),
)
_DOC = st.builds(
    Document,
    st.none() | _TEXT,
    st.none() | st.sampled_from(["CPT4 code", "HCPCS code", "ICD-10-CM code", "weird code"]),
    st.lists(_BLOCK, max_size=12),
)
_URL = st.none() | st.sampled_from(
    [
        "https://genhealth.ai/code/cpt4/63185-x",
        "https://genhealth.ai/code/hcpcs/A4253",
        "https://x.org/code/cpt4/12",
        "https://x.org/code/icd10cm/M54.5",
        "not a url",
        "https://x.org/",
    ]
)
_META = st.fixed_dictionaries(
    {},
    optional={
        "code_system": st.none() | st.sampled_from(["cpt", "HCPCS", "loinc", ""]) | st.integers(),
        "code": st.none() | st.sampled_from(["63185", "a4253", "bogus", ""]) | st.integers(0, 99999),
        "fetched_at": st.none() | st.sampled_from(["2025-01-01", "junk", ""]) | st.floats(allow_nan=True),
        "content_type": st.none() | st.sampled_from(["text/plain", ""]) | st.integers(),
        "url": st.none() | st.integers() | st.sampled_from(["https://genhealth.ai/code/cpt4/99213"]),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_DOC, url=_URL, meta=_META)
def test_any_document_becomes_a_record_or_a_one_line_reject(
    doc: Document, url: str | None, meta: dict
) -> None:
    try:
        rec = build_record(doc, url=url, path=None, meta=meta, sha256="0" * 64, kind="text")
    except RejectedPage as exc:
        assert exc.reason and "\n" not in exc.reason
        assert exc.stage == "normalize"
        return
    assert rec.record_id == f"{rec.code_system}:{rec.code}"
    for lo, hi in [
        (rec.duration_minutes_min, rec.duration_minutes_max),
        (rec.fasting_hours_min, rec.fasting_hours_max),
    ]:
        assert lo is None or hi is None or lo <= hi
