"""The bundled sample corpus in ``raw/`` ends exactly as ``tests/samples_expected.json`` says.

``samples_expected.json`` maps every input file under ``raw/`` (path relative to ``raw/``, sidecars
excluded) to one expected outcome, written by a person reading the page:

- ``{"record": {...}}``: the page becomes a record with this ``code_system``, ``code``, ``title``
  and ``section_keys`` (canonical keys of its top-level sections in page order, ``other`` for a
  heading outside the vocabulary). Optional keys are checked when present: ``preamble`` (the text
  before the first heading, exactly), ``procedure_name``,
  ``common_names``, ``technical_term`` (compared ignoring case), ``similar_codes`` (the codes, in
  order), ``fields`` (typed fields such as ``duration_minutes_min``) and ``contains`` (strings that
  must appear in the record, e.g. the accented words of a cp1252 page).
- ``{"reject": "<text>"}``: the page is rejected and the reason contains the text (ignoring case).
- ``{"duplicate_of": "<code_system>:<code>"}``: the page parses to that record but loses to a newer
  page for the same code when the corpus is published.

The pages are our own writing (see the report of issue 2, point 9); they cover every markup style,
code system and quirk the parsers must handle, and the inputs that must end as rejects.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "raw"
EXPECTED: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).with_name("samples_expected.json")).read_text(encoding="utf-8")
)
NO_WORKER = "the batch worker (pipeline.process) is not built yet"
MOJIBAKE = ("Ã", "â€", "Â", "\ufffd")
#: Words of the site chrome around the sample pages (nav, scripts, cookie banners, footers, search
#: lines): none of them may reach a record.
CHROME = (
    "Search all medical codes",
    "Search codes",
    "We use cookies",
    "uses cookies",
    "Accept all",
    "Cookie settings",
    "dataLayer",
    "Similar Codes opened",
    "SampleHealth explains",
    "For education only",
    "MedGuide articles",
    "Patient leaflets",
)


def raw_inputs() -> set[str]:
    """Every input file under raw/ (relative posix paths): sidecars and hidden files excluded."""
    found = set()
    for p in RAW.rglob("*"):
        rel = p.relative_to(RAW)
        hidden = any(x.startswith(".") for x in rel.parts)
        if p.is_file() and not p.name.endswith(".meta.json") and not hidden:
            found.add(rel.as_posix())
    return found


def is_cp1252_page(rel: str) -> bool:
    """True when the file's bytes are not UTF-8 (Windows-1252 pages, and binary files)."""
    data = (RAW / rel).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def cp1252_pages() -> list[str]:
    """The pages expected to become records whose bytes are not UTF-8 (Windows-1252 text)."""
    return [rel for rel in sorted(EXPECTED) if "record" in EXPECTED[rel] and is_cp1252_page(rel)]


def strings(x: Any) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, dict):
        return [s for v in x.values() for s in strings(v)]
    if isinstance(x, list):
        return [s for v in x for s in strings(v)]
    return []


def result_of(rel: str) -> dict[str, Any]:
    """Read and parse one sample exactly as a batch worker does (reader, sidecar, parse_page)."""
    process = pytest.importorskip("pipeline.process", reason=NO_WORKER)
    [result] = process.process_batch([rel], str(RAW))
    return result


def check_record(rel: str, want: dict[str, Any], got: dict[str, Any]) -> None:
    assert (got["code_system"], got["code"]) == (want["code_system"], want["code"]), rel
    assert got["title"] == want["title"], rel
    assert [s["key"] for s in got["sections"]] == want["section_keys"], rel
    if "preamble" in want:
        assert got["preamble"] == want["preamble"], rel
    for field in ("procedure_name", "technical_term"):
        if field in want:
            assert (got.get(field) or "").casefold() == want[field].casefold(), f"{rel}: {field}"
    if "common_names" in want:
        names = [n.casefold() for n in got["common_names"]]
        assert names == [n.casefold() for n in want["common_names"]], rel
    if "similar_codes" in want:
        assert [s["code"] for s in got["similar_codes"]] == want["similar_codes"], rel
    for field, value in want.get("fields", {}).items():
        assert got.get(field) == value, f"{rel}: {field}"
    text = "\n".join(strings(got))
    for needle in want.get("contains", []):
        assert needle in text, f"{rel}: {needle!r} missing from the record"


def test_every_raw_file_is_listed_in_the_expectations() -> None:
    on_disk = raw_inputs()
    assert sorted(on_disk - set(EXPECTED)) == [], "raw files without an expectation"
    assert sorted(set(EXPECTED) - on_disk) == [], "expectations without a raw file"


def test_the_samples_cover_every_system_style_and_bad_input() -> None:
    records = [e["record"] for e in EXPECTED.values() if "record" in e]
    pages = [rel for rel, e in EXPECTED.items() if "reject" not in e]
    assert len(pages) >= 44
    systems = {r["code_system"] for r in records}
    assert {"cpt", "hcpcs", "icd10pcs", "cdt"} <= systems
    codes = [r["code"] for r in records]
    assert any(re.fullmatch(r"\d{4}T", c) for c in codes), "a CPT Category III code"
    assert any(re.fullmatch(r"\d{4}F", c) for c in codes), "a CPT Category II code"
    assert {Path(p).suffix for p in pages} >= {".html", ".txt", ".md"}
    assert any(k == "other" for r in records for k in r["section_keys"])
    reasons = {e["reject"] for e in EXPECTED.values() if "reject" in e}
    assert {"empty", "binary", "code found", "not a procedure page", "sidecar"} <= reasons
    duplicates = [e["duplicate_of"] for e in EXPECTED.values() if "duplicate_of" in e]
    assert duplicates and all(d in {f"{r['code_system']}:{r['code']}" for r in records} for d in duplicates)
    assert cp1252_pages(), "a Windows-1252 page that must become a record"
    # the chrome check below is only worth something if the pages really carry that chrome
    raw_text = "\n".join((RAW / rel).read_bytes().decode("utf-8", "replace") for rel in EXPECTED)
    assert [c for c in CHROME if c not in raw_text] == []


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_sample_page_ends_as_expected(rel: str) -> None:
    want = EXPECTED[rel]
    result = result_of(rel)
    if "reject" in want:
        assert "reject" in result, f"{rel} should be rejected ({want['reject']}), got a record"
        assert want["reject"].casefold() in result["reject"]["reason"].casefold(), result["reject"]
        assert result["reject"]["source"] == rel
        return
    assert "record" in result, f"{rel} was rejected: {result.get('reject')}"
    record = result["record"]
    if "duplicate_of" in want:
        assert record["record_id"] == want["duplicate_of"]
    else:
        check_record(rel, want["record"], record)
    assert record["source"]["path"] == rel
    bad = [s for s in strings(record) if any(m in s for m in MOJIBAKE)]
    assert bad == [], f"{rel}: mojibake in the record"
    leaked = [s for s in strings(record) if any(c.casefold() in s.casefold() for c in CHROME)]
    assert leaked == [], f"{rel}: site chrome reached the record"


def test_cp1252_samples_parse_without_mojibake() -> None:
    pages = cp1252_pages()
    assert pages, "the corpus must hold a Windows-1252 page"
    for rel in pages:
        result = result_of(rel)
        assert "record" in result, f"{rel}: {result.get('reject')}"
        text = "\n".join(strings(result["record"]))
        assert not any(m in text for m in MOJIBAKE), rel
        assert re.search(r"[éí’–]", text), f"{rel}: the accented characters were lost"


def test_publishing_the_samples_folds_the_duplicate_into_the_newest_page(tmp_path: Path) -> None:
    process = pytest.importorskip("pipeline.process", reason=NO_WORKER)
    manifest = process.run_local(RAW, tmp_path, workers=1)
    want_records = {rel: e["record"] for rel, e in EXPECTED.items() if "record" in e}
    want_dupes = {rel: e["duplicate_of"] for rel, e in EXPECTED.items() if "duplicate_of" in e}
    want_rejects = {rel for rel, e in EXPECTED.items() if "reject" in e}
    counts = manifest.counts
    assert (counts.inputs, counts.records, counts.rejects, counts.duplicates) == (
        len(EXPECTED),
        len(want_records),
        len(want_rejects),
        len(want_dupes),
    )
    latest = tmp_path / "latest"
    records = [json.loads(line) for line in (latest / "procedures.jsonl").read_text().splitlines() if line]
    by_id = {r["record_id"]: r for r in records}
    for rel, want in want_records.items():
        rid = f"{want['code_system']}:{want['code']}"
        assert by_id[rid]["source"]["path"] == rel, f"{rid} should come from {rel}"
    rejects = [json.loads(line) for line in (latest / "rejects.jsonl").read_text().splitlines() if line]
    assert {r["source"] for r in rejects} == want_rejects
