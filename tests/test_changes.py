"""The change report of every version: codes added, removed and changed with old and new values,
in changes.parquet, changes.md, the manifest, and the flow's artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from test_incremental import code_of, make_raw, page

from pipeline.incremental import run
from pipeline.publish import changes, publish


def record(code: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "record_id": f"cpt:{code}",
        "code_system": "cpt",
        "code": code,
        "title": f"Procedure {code}",
        "sections": [{"key": "risks", "heading": "Risks", "items": [{"text": "Bleeding"}]}],
        "risks": ["Bleeding"],
        "source": {"path": f"{code}.txt", "sha256": "0" * 64},
        "parser_version": "test",
    }
    data.update(fields)
    return {"record": data}


def rows(version: Path) -> list[dict[str, Any]]:
    return pq.read_table(version / changes.PARQUET).to_pylist()


def test_added_removed_and_changed_fields_with_old_and_new_values(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish([record("10001"), record("10002"), record("10003")], out, inputs=3, run_id="v1")
    m = publish(
        [
            record("10001"),  # unchanged
            record("10002", title="Procedure two, renamed", duration_minutes_min=20, duration_minutes_max=40),
            record("10004"),  # added; 10003 removed
        ],
        out,
        inputs=3,
        run_id="v2",
    )
    assert m.changes == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    assert m.previous_run_id == "v1"
    assert {"changes.parquet", "changes.md"} <= set(m.files)
    assert m.files["changes.parquet"].rows == 5
    got = {(r["record_id"], r["change"], r["field"]): r for r in rows(out / "versions" / "v2")}
    assert set(got) == {
        ("cpt:10004", "added", None),
        ("cpt:10003", "removed", None),
        ("cpt:10002", "changed", "title"),
        ("cpt:10002", "changed", "duration_minutes_max"),
        ("cpt:10002", "changed", "duration_minutes_min"),
    }
    title = got[("cpt:10002", "changed", "title")]
    assert json.loads(title["old_value"]) == "Procedure 10002"
    assert json.loads(title["new_value"]) == "Procedure two, renamed"
    assert json.loads(got[("cpt:10002", "changed", "duration_minutes_max")]["old_value"]) is None

    md = (out / "versions" / "v2" / "changes.md").read_text(encoding="utf-8")
    assert "Against v1." in md and "| 1 | 1 | 1 | 1 |" in md
    assert "`cpt:10004`" in md and "`cpt:10003`" in md
    assert '| `cpt:10002` | title | "Procedure 10002" | "Procedure two, renamed" |' in md


def test_the_first_version_reports_every_record_added(tmp_path: Path) -> None:
    m = publish([record("10001"), record("10002")], tmp_path / "out", inputs=2, run_id="v1")
    assert m.changes == {"added": 2, "removed": 0, "changed": 0, "unchanged": 0}
    assert m.previous_run_id is None
    assert [r["change"] for r in rows(tmp_path / "out" / "latest")] == ["added", "added"]
    assert "First version" in (tmp_path / "out" / "latest" / "changes.md").read_text(encoding="utf-8")


def test_provenance_and_parser_stamps_are_not_changes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish([record("10001")], out, inputs=1, run_id="v1")
    source = {"path": "elsewhere/10001.txt", "sha256": "1" * 64, "fetched_at": "2030-01-01T00:00:00Z"}
    moved = record("10001", parser_version="test-2", source=source)
    m = publish([moved], out, inputs=1, run_id="v2")
    assert m.changes == {"added": 0, "removed": 0, "changed": 0, "unchanged": 1}
    assert rows(out / "versions" / "v2") == []
    assert "No changes." in (out / "versions" / "v2" / "changes.md").read_text(encoding="utf-8")


def test_a_section_change_is_listed_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish([record("10001")], out, inputs=1, run_id="v1")
    risks = [{"key": "risks", "heading": "Risks", "items": [{"text": "Bleeding"}, {"text": "Infection"}]}]
    renamed = [{**risks[0], "heading": "Possible Risks"}]
    both = ["Bleeding", "Infection"]
    publish([record("10001", sections=risks, risks=both)], out, inputs=1, run_id="v2")
    publish([record("10001", sections=renamed, risks=both)], out, inputs=1, run_id="v3")
    assert [r["field"] for r in rows(out / "versions" / "v2")] == ["risks"]  # not sections.risks too
    (only,) = rows(out / "versions" / "v3")
    assert only["field"] == "sections.risks" and "Possible Risks" in only["new_value"]


def test_change_counts_add_up_over_a_real_refresh(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 5), tmp_path / "out"
    run(raw, out, workers=1)
    (raw / "site" / "cpt" / f"{code_of(0)}.md").write_text(page(code_of(0), 0, risks=False), encoding="utf-8")
    m = run(raw, out, workers=1)
    assert m.changes == {"added": 0, "removed": 0, "changed": 1, "unchanged": 4}
    fields = {r["field"] for r in rows(out / "latest")}
    assert "risks" in fields and "sections.risks" not in fields


def test_flow_writes_quality_and_changes_artifacts(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from pipeline.flows import CHANGES_KEY, QUALITY_KEY, process

    raw, out = make_raw(tmp_path / "raw", 4, bad=1), tmp_path / "out"
    process(str(raw), str(out), workers=1)
    (raw / "site" / "cpt" / f"{code_of(2)}.md").write_text(
        page(code_of(2), 2, summary="Now shorter."), "utf-8"
    )
    state = process(str(raw), str(out), workers=1, return_state=True)
    manifest = state.result()
    assert manifest.reused == 4 and manifest.changes["changed"] == 1
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    artifacts = {a.key: a for a in found if a.key}
    assert "Now shorter." in str(artifacts[CHANGES_KEY].data)
    assert f"cpt:{code_of(2)}" in str(artifacts[CHANGES_KEY].data)
    quality = str(artifacts[QUALITY_KEY].data)
    assert "Passed." in quality and "reject_rate" in quality and "record_drop" in quality
