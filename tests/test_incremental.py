"""Incremental runs: unchanged pages reuse their results; changed pages, a changed sidecar, a new
parser or vocabulary, and results that may go differently next time are parsed again.

The helpers at the top (``page``, ``make_raw``) are shared by the other refresh tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import pipeline.process
from pipeline import incremental
from pipeline.incremental import LEDGER, plan, run
from pipeline.publish.versions import verify

# ---------------------------------------------------------------- pages of our own words

RISKS = ["Bruising", "Infection", "Bleeding", "Soreness at the site", "A reaction to the dressing"]


def page(code: str, n: int = 0, *, summary: str | None = None, risks: bool = True) -> str:
    """A small Markdown procedure page; ``n`` varies the words so every page differs."""
    text = summary or f"A thin needle draws a few cells from lump number {n} to look at them closely."
    out = [f"# Needle sampling of a lump, site {n}", "", "CPT4 code", "", "## Summary", "", text, ""]
    out += ["## Indications", "", f"- A lump found on examination ({n}).", "- A lump seen on a scan.", ""]
    if risks:
        out += ["## Risks and Complications", "", *(f"- {r}" for r in RISKS[: 2 + n % 3]), ""]
    return "\n".join(out)


def code_of(i: int) -> str:
    return f"{10000 + i:05d}"


def make_raw(root: Path, n: int, *, bad: int = 0, duplicates: int = 0) -> Path:
    """``n`` good pages ``site/cpt/<code>.md``, ``bad`` empty pages, ``duplicates`` second copies."""
    (root / "site" / "cpt").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / "site" / "cpt" / f"{code_of(i)}.md").write_text(page(code_of(i), i), encoding="utf-8")
    for i in range(bad):
        (root / "bad").mkdir(exist_ok=True)
        (root / "bad" / f"empty{i}.txt").write_text("", encoding="utf-8")
    for i in range(duplicates):
        (root / "mirror" / "cpt").mkdir(parents=True, exist_ok=True)
        (root / "mirror" / "cpt" / f"{code_of(i)}.md").write_text(page(code_of(i), i), encoding="utf-8")
    return root


def ledger(version: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in (version / LEDGER).read_text(encoding="utf-8").splitlines()]
    return {r["path"]: r for r in rows}


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the (in-process, one-worker) runs parse, in order."""
    seen: list[str] = []
    real = pipeline.process.process_batch

    def counting(paths: list[str], raw_dir: str, stage: str | None = None) -> list[dict[str, Any]]:
        seen.extend(paths)
        return real(paths, raw_dir, stage)

    monkeypatch.setattr(pipeline.process, "process_batch", counting)
    return seen


# ---------------------------------------------------------------- tests


def test_unchanged_refresh_parses_nothing_and_links_the_previous_tables(
    tmp_path: Path, parsed: list[str]
) -> None:
    raw, out = make_raw(tmp_path / "raw", 6, bad=1, duplicates=1), tmp_path / "out"
    first = run(raw, out, workers=1)
    assert first.reused == 0 and len(parsed) == 8
    parsed.clear()

    second = run(raw, out, workers=1)
    assert parsed == []  # nothing was parsed again
    assert second.reused == second.counts.inputs == 8
    assert second.counts == first.counts
    assert second.changes == {"added": 0, "removed": 0, "changed": 0, "unchanged": 6}
    a, b = out / "versions" / first.run_id, out / "versions" / second.run_id
    for name in ("procedures.parquet", "procedures.jsonl", "sections.parquet", LEDGER):
        assert (a / name).stat().st_ino == (b / name).stat().st_ino  # one copy on disk
    assert verify(a) == [] and verify(b) == []
    rows = ledger(b)
    assert {r["outcome"] for r in rows.values()} == {"record", "reject", "duplicate"}
    assert rows["bad/empty0.txt"]["outcome"] == "reject"


def test_only_changed_pages_are_parsed_again(tmp_path: Path, parsed: list[str]) -> None:
    raw, out = make_raw(tmp_path / "raw", 6, bad=1, duplicates=1), tmp_path / "out"
    run(raw, out, workers=1)
    parsed.clear()
    changed = raw / "site" / "cpt" / f"{code_of(2)}.md"
    changed.write_text(page(code_of(2), 2, summary="A thicker needle takes a small core of tissue."), "utf-8")
    (raw / "site" / "cpt" / f"{code_of(5)}.md").unlink()
    (raw / "site" / "cpt" / f"{code_of(9)}.md").write_text(page(code_of(9), 9), encoding="utf-8")

    m = run(raw, out, workers=1)
    # the changed page, the new one, and the page folded as a duplicate (its record is not kept)
    expected = [f"mirror/cpt/{code_of(0)}.md", f"site/cpt/{code_of(2)}.md", f"site/cpt/{code_of(9)}.md"]
    assert sorted(parsed) == expected
    assert m.changes == {"added": 1, "removed": 1, "changed": 1, "unchanged": 4}
    assert m.counts.inputs == 8 and m.reused == 5  # 4 records and the reject
    records = [
        json.loads(line) for line in (out / "latest" / "procedures.jsonl").read_text("utf-8").splitlines()
    ]
    by_id = {r["record_id"]: r for r in records}
    assert by_id[f"cpt:{code_of(2)}"]["summary"] == "A thicker needle takes a small core of tissue."
    assert f"cpt:{code_of(5)}" not in by_id and f"cpt:{code_of(9)}" in by_id
    assert verify(out / "latest") == []


def test_reused_results_equal_a_full_run(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", 8, bad=2, duplicates=2)
    run(raw, tmp_path / "inc", workers=1)
    (raw / "site" / "cpt" / f"{code_of(3)}.md").write_text(page(code_of(3), 33), encoding="utf-8")
    inc = run(raw, tmp_path / "inc", workers=1)
    full = run(raw, tmp_path / "full", workers=1)
    assert inc.reused and not full.reused
    for name in ("procedures.jsonl", "rejects.jsonl", "duplicates.jsonl", LEDGER):
        assert (tmp_path / "inc" / "latest" / name).read_bytes() == (
            tmp_path / "full" / "latest" / name
        ).read_bytes()


def test_a_changed_sidecar_reparses_its_page(tmp_path: Path, parsed: list[str]) -> None:
    raw, out = make_raw(tmp_path / "raw", 3), tmp_path / "out"
    side = raw / "site" / "cpt" / f"{code_of(1)}.meta.json"
    side.write_text(json.dumps({"fetched_at": "2030-01-01T00:00:00Z"}), encoding="utf-8")
    run(raw, out, workers=1)
    parsed.clear()
    side.write_text(json.dumps({"fetched_at": "2030-02-01T00:00:00Z"}), encoding="utf-8")
    m = run(raw, out, workers=1)
    assert parsed == [f"site/cpt/{code_of(1)}.md"]
    rec = next(json.loads(x) for x in (out / "latest" / "procedures.jsonl").read_text("utf-8").splitlines()
               if json.loads(x)["code"] == code_of(1))  # fmt: skip
    assert rec["source"]["fetched_at"].startswith("2030-02-01")
    assert m.changes == {"added": 0, "removed": 0, "changed": 0, "unchanged": 3}  # provenance is no change


def test_a_new_parser_version_reparses_everything(
    tmp_path: Path, parsed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, out = make_raw(tmp_path / "raw", 3, bad=1), tmp_path / "out"
    run(raw, out, workers=1)
    parsed.clear()
    monkeypatch.setattr("pipeline.version.PARSER_REVISION", "test-next")
    the_plan = plan(raw, out)
    assert the_plan.to_parse == the_plan.paths and not the_plan.reuse
    assert "parser version changed" in the_plan.describe()
    m = run(raw, out, workers=1)
    assert len(parsed) == 4 and m.reused == 0


def test_a_vocabulary_edit_reparses_everything(
    tmp_path: Path, parsed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.normalize.vocabulary import DEFAULT_PATH, load_vocabulary

    raw, out = make_raw(tmp_path / "raw", 3), tmp_path / "out"
    run(raw, out, workers=1)
    parsed.clear()
    vocab = tmp_path / "vocabulary.toml"
    vocab.write_text(DEFAULT_PATH.read_text(encoding="utf-8") + "\n# an analyst's edit\n", encoding="utf-8")
    monkeypatch.setenv("PROCPIPE_VOCABULARY", str(vocab))
    load_vocabulary.cache_clear()
    try:
        m = run(raw, out, workers=1)
    finally:
        monkeypatch.delenv("PROCPIPE_VOCABULARY")
        load_vocabulary.cache_clear()
    assert len(parsed) == 3 and m.reused == 0


def test_results_that_may_differ_next_time_are_not_reused(
    tmp_path: Path, parsed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, out = make_raw(tmp_path / "raw", 3), tmp_path / "out"
    flaky = f"site/cpt/{code_of(1)}.md"
    real = pipeline.process.parse_page

    def failing(content: bytes, **kw: Any) -> Any:
        if kw.get("path") == flaky:
            raise MemoryError("injected")
        return real(content, **kw)

    monkeypatch.setattr(pipeline.process, "parse_page", failing)
    first = run(raw, out, workers=1)
    assert first.counts.rejects == 1
    assert ledger(out / "latest")[flaky]["reusable"] is False  # "internal error: ..."
    monkeypatch.setattr(pipeline.process, "parse_page", real)
    parsed.clear()
    second = run(raw, out, workers=1)
    assert parsed == [flaky] and second.counts.records == 3 and second.changes["added"] == 1


def test_full_flag_and_a_damaged_previous_version_reparse_everything(
    tmp_path: Path, parsed: list[str]
) -> None:
    raw, out = make_raw(tmp_path / "raw", 3), tmp_path / "out"
    run(raw, out, workers=1)
    parsed.clear()
    run(raw, out, workers=1, full=True)
    assert len(parsed) == 3
    parsed.clear()
    target = out / "latest" / "procedures.jsonl"
    os.chmod(target, 0o644)
    data = target.read_bytes()
    target.write_bytes(data.replace(b"lump", b"lamp", 1))  # bit rot in the version we would reuse from
    the_plan = plan(raw, out)
    assert "does not verify" in the_plan.reason and the_plan.to_parse == the_plan.paths
    m = run(raw, out, workers=1)
    assert len(parsed) == 3 and m.reused == 0 and verify(out / "latest") == []


def test_reuse_key_covers_parser_code(monkeypatch: pytest.MonkeyPatch) -> None:
    before = incremental.reuse_key()
    monkeypatch.setattr(incremental, "_code_hash", lambda: "another parser")
    assert incremental.reuse_key() != before
