"""End to end over the real pages in ``../shared/corpus``: text rendering -> parse_page -> record, checked
against ``expected.jsonl`` (code, title, section keys in order, item counts, first words, words kept).

Page text is read at test time only (never copied into the project); skipped when the corpus or the
text front end is absent.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import RejectedPage
from pipeline.normalize.record import item_lines
from pipeline.normalize.sections import section_item_count
from schemas.models import ProcedureRecord, Section

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
EXPECTED = CORPUS / "expected.jsonl"
_TOKEN = re.compile(r"[A-Za-z0-9]+")


def _rows() -> list[dict[str, Any]]:
    if not EXPECTED.exists():
        return []
    return [json.loads(line) for line in EXPECTED.read_text(encoding="utf-8").splitlines() if line.strip()]


ROWS = _rows()


@pytest.fixture(scope="module")
def parse_page() -> Any:
    if not EXPECTED.exists():
        pytest.skip(f"real-page corpus not found at {CORPUS} (needs ../shared/corpus beside the repo)")
    pytest.importorskip("pipeline.parse.text", reason="text front end (pipeline/parse/text.py) not built yet")
    from pipeline.api import parse_page

    return parse_page


def _parse(parse_page: Any, row: dict[str, Any]) -> ProcedureRecord:
    path = CORPUS / row["path"]
    return parse_page(path.read_bytes(), url=row["url"], path=row["path"])  # type: ignore[no-any-return]


def _bare_title(title: str, code: str) -> str:
    t = title.strip()
    return t[len(code) :].strip(" -:") if t.upper().startswith(code.upper() + " ") else t


def _section_words(s: Section) -> list[str]:
    parts = [s.text or "", *item_lines(s.items)]
    for sub in s.subsections:
        parts += [sub.heading, sub.text or "", *item_lines(sub.items)]
    return [w.lower() for w in _TOKEN.findall(" ".join(parts))]


@pytest.mark.parametrize("row", ROWS, ids=[r["path"] for r in ROWS])
def test_corpus_page_matches_expectations(parse_page: Any, row: dict[str, Any]) -> None:
    if row["kind"] == "condition":
        with pytest.raises(RejectedPage, match="not a procedure page"):
            _parse(parse_page, row)
        return
    rec = _parse(parse_page, row)
    assert (rec.code_system, rec.code) == (row["code_system"], row["code"].upper())
    assert _bare_title(rec.title or "", rec.code) == _bare_title(row["title"], rec.code)
    got = [s for s in rec.sections if s.key != "other"]
    assert [s.key for s in got] == [s["key"] for s in row["sections"]]
    first = {}
    for s in got:
        first.setdefault(s.key, s)
    for want in row["sections"]:
        s = first[want["key"]]
        assert s.heading == want["heading"]
        if want["items"]:
            assert section_item_count(s) == want["items"], want["key"]
        fw = [w.lower() for w in _TOKEN.findall(want["first_words"])]
        words = _section_words(s)
        assert not fw or any(words[i : i + len(fw)] == fw for i in range(len(words))), want["key"]


def _strings(x: Any) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, dict):
        return [s for v in x.values() for s in _strings(v)]
    if isinstance(x, list):
        return [s for v in x for s in _strings(v)]
    return []


def test_corpus_content_words_are_kept(parse_page: Any) -> None:
    """At least 98% of each page's content words (chrome, headings and the code line aside) are in its
    record; only list numbering ("1.", "2.") may go missing."""
    hit = total = 0
    for row in ROWS:
        if row["kind"] == "condition":
            continue
        rec = _parse(parse_page, row)
        lines = [ln.strip() for ln in (CORPUS / row["path"]).read_text(encoding="utf-8").splitlines()]
        heads = {s["heading"].lower() for s in row["sections"]} | {"search all medical codes"}
        content = [
            ln for ln in lines if ln and ln.rstrip(":").lower() not in heads and not ln.endswith(" code")
        ]
        page = collections.Counter(t.lower() for t in _TOKEN.findall(" ".join(content)))
        have = collections.Counter(t.lower() for t in _TOKEN.findall(" ".join(_strings(rec.model_dump()))))
        lost = {t for t, c in page.items() if c > have[t] and not t.isdigit()}
        assert lost <= {"codes"}, (row["path"], lost)  # "codes" only in the breadcrumb (site navigation)
        hit += sum(min(c, have[t]) for t, c in page.items())
        total += sum(page.values())
    assert total and hit / total >= 0.98
