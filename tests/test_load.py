"""The analyst loaders: published tables as DataFrames with Arrow-backed dtypes, read back by version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE_COUNTS, SAMPLE_RECORD_IDS

import pipeline
from pipeline.load import (
    load_duplicates,
    load_items,
    load_manifest,
    load_procedures,
    load_rejects,
    load_sections,
    load_similar,
    reason_group,
    run_summary,
    versions,
)


def test_procedures_have_arrow_dtypes_categorical_code_system_and_utc_fetched_at(published: Path) -> None:
    df = load_procedures(published)
    assert set(df["record_id"]) == SAMPLE_RECORD_IDS
    assert isinstance(df["record_id"].dtype, pd.ArrowDtype)
    assert isinstance(df["sections"].dtype, pd.ArrowDtype)  # nested list<struct> kept as Arrow
    assert isinstance(df["code_system"].dtype, pd.CategoricalDtype)
    assert set(df["code_system"].cat.categories) == {"cpt", "hcpcs"}
    assert str(df["fetched_at"].dtype.pyarrow_dtype.tz) == "UTC"
    fetched = df.set_index("record_id")["fetched_at"]
    assert fetched["cpt:47562"] == pd.Timestamp("2030-01-02T03:04:05Z")  # the duplicate with the newer date


def test_package_forwards_load_procedures(published: Path) -> None:
    forwarded = pipeline.load_procedures(published)
    assert forwarded["record_id"].tolist() == load_procedures(published)["record_id"].tolist()


def test_child_tables_join_to_their_records(published: Path) -> None:
    records = set(load_procedures(published)["record_id"])
    sections = load_sections(published)
    items = load_items(published)
    assert set(sections["record_id"]) == records
    assert set(items["record_id"]) <= records
    assert isinstance(items["code_system"].dtype, pd.CategoricalDtype)
    gallbladder = sections[sections["record_id"] == "cpt:47562"]
    assert "indications" in set(gallbladder["key"])
    per_section = items.groupby(["record_id", "section_key"], observed=True).size()
    assert per_section[("cpt:47562", "indications")] == 3
    assert list(load_similar(published).columns)[:3] == ["record_id", "code_system", "code"]


def test_rejects_and_duplicates_tables_account_for_the_bad_and_the_folded_pages(published: Path) -> None:
    rejects = load_rejects(published).set_index("source")
    assert set(rejects.index) == {"bad/empty.txt", "bad/sprain.txt", "bad/cpt/99213.txt"}
    assert "broken sidecar" in rejects.loc["bad/cpt/99213.txt", "reason"]
    assert rejects.loc["bad/sprain.txt", "reason"].startswith("not a procedure page")
    assert isinstance(rejects["stage"].dtype, pd.CategoricalDtype)
    duplicates = load_duplicates(published)
    assert duplicates["record_id"].tolist() == ["cpt:47562"]


def test_versions_load_by_run_id_like_latest(published: Path) -> None:
    (run_id,) = versions(published)
    assert load_manifest(published).run_id == run_id
    pd.testing.assert_frame_equal(load_sections(published, version=run_id), load_sections(published))


def test_nothing_published_is_a_one_line_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing published in .* yet \(run `procpipe run`") as err:
        load_procedures(tmp_path / "processed")
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="no version 'nope'"):
        load_rejects(tmp_path, version="nope")


def test_run_summary_counts_reasons_and_section_coverage(published: Path) -> None:
    summary = run_summary(published)
    assert summary["counts"] == SAMPLE_COUNTS
    assert summary["path"] == published / "versions" / summary["run_id"]
    assert set(summary["rejects_by_reason"]) >= {"broken sidecar", "not a procedure page"}
    assert sum(summary["rejects_by_reason"].values()) == SAMPLE_COUNTS["rejects"]
    coverage = summary["coverage"]
    assert coverage["summary"] == 1.0
    assert coverage["recovery"] == pytest.approx(1 / 3)
    assert coverage["contraindications"] == 0.0


@pytest.mark.parametrize(
    ("reason", "group"),
    [
        ("not a procedure page (Name of the Condition, Causes)", "not a procedure page"),
        ("broken sidecar 99213.meta.json: invalid JSON (expected value)", "broken sidecar"),
        ("internal error: ValueError: boom", "internal error"),
        ("unsupported file type .pdf", "unsupported file type .pdf"),
        ("empty file", "empty file"),
    ],
)
def test_reason_group_keeps_the_general_part(reason: str, group: str) -> None:
    assert reason_group(reason) == group


def test_readme_python_examples_run(
    published: Path, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Python examples, executed against a published sample dataset and the repo's raw/."""
    import re

    if not (repo_root / "raw").is_dir():
        pytest.skip("the repo's raw/ sample pages are absent")
    blocks = re.findall(r"```python\n(.*?)```", (repo_root / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks
    (tmp_path / "processed").symlink_to(published, target_is_directory=True)
    (tmp_path / "raw").symlink_to(repo_root / "raw", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


# ---------------------------------------------------------------- dtypes for analysts (issue 6)


def test_typed_fields_are_nullable_integers_and_text_is_arrow_backed(published: Path) -> None:
    df = load_procedures(published).set_index("record_id")
    for col in (
        "duration_minutes_min",
        "duration_minutes_max",
        "hospital_stay_days_min",
        "fasting_hours_max",
    ):
        assert str(df[col].dtype) == "int64[pyarrow]", col
    assert df.loc["cpt:47562", "duration_minutes_min"] == 60  # "1 to 2 hours"
    assert pd.isna(df.loc["cpt:29881", "duration_minutes_min"])  # the page does not say: <NA>, not 0 or NaN
    assert str(df["title"].dtype) == "string[pyarrow]"
    names = df["common_names"].dtype
    assert isinstance(names, pd.ArrowDtype) and pa.types.is_list(names.pyarrow_dtype)
    assert names.pyarrow_dtype.value_type == pa.string()
    assert list(df.loc["cpt:47562", "common_names"]) == ["Keyhole gallbladder surgery"]


def test_section_keys_are_categoricals(published: Path) -> None:
    sections = load_sections(published)
    assert isinstance(sections["key"].dtype, pd.CategoricalDtype)
    assert {"summary", "indications", "duration"} <= set(sections["key"].cat.categories)
    items = load_items(published)
    assert isinstance(items["section_key"].dtype, pd.CategoricalDtype)
    assert str(items["depth"].dtype) == "int32[pyarrow]"
    assert str(items["parent_position"].dtype) == "int32[pyarrow]"  # nullable: top-level items have <NA>
    assert items["parent_position"].isna().any()


def test_load_changes_says_when_a_version_has_no_change_report(published: Path, tmp_path: Path) -> None:
    run_id = versions(published)[-1]
    copy = tmp_path / "versions" / run_id
    shutil.copytree(published / "versions" / run_id, copy)
    (copy / "changes.parquet").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=rf"version {run_id} has no change report") as err:
        pipeline.load_changes(tmp_path, version=run_id)
    assert "\n" not in str(err.value)


def test_load_changes_reads_the_change_report(published: Path, tmp_path: Path) -> None:
    run_id = versions(published)[-1]
    copy = tmp_path / "versions" / run_id
    shutil.copytree(published / "versions" / run_id, copy)
    rows = [
        {"record_id": "cpt:29881", "change": "added", "field": None, "old_value": None, "new_value": None},
        {
            "record_id": "cpt:47562",
            "change": "changed",
            "field": "summary",
            "old_value": '"a"',
            "new_value": '"b"',
        },
        {
            "record_id": "hcpcs:E0999",
            "change": "removed",
            "field": None,
            "old_value": None,
            "new_value": None,
        },
    ]
    pq.write_table(pa.Table.from_pylist(rows), copy / "changes.parquet")
    changes = pipeline.load_changes(tmp_path, version=run_id)
    assert list(changes.columns)[:3] == ["record_id", "code_system", "code"]
    assert isinstance(changes["change"].dtype, pd.CategoricalDtype)
    assert isinstance(changes["code_system"].dtype, pd.CategoricalDtype)
    assert changes["code"].tolist() == ["29881", "47562", "E0999"]
    assert changes.groupby("change", observed=True).size().to_dict() == {
        "added": 1,
        "changed": 1,
        "removed": 1,
    }


def test_load_changes_of_a_first_version_lists_every_record_as_added(published: Path) -> None:
    changes = pipeline.load_changes(published)
    assert set(changes["record_id"]) == SAMPLE_RECORD_IDS
    assert set(changes["change"]) == {"added"}
    assert changes["field"].isna().all()


def test_section_coverage_reads_row_group_by_row_group_and_counts_each_record_once(
    published: Path, tmp_path: Path
) -> None:
    from pipeline.load import section_coverage

    version = tmp_path / "v"
    shutil.copytree(published / "latest", version)
    whole = section_coverage(version)
    # what publish counted while writing is what the table says
    quality = load_manifest(published).quality
    assert quality is not None
    assert quality["coverage"] == {k: round(v, 6) for k, v in whole.items()}
    # row groups of two rows: a record's sections straddle groups, and one record repeats a key
    sections = pq.read_table(version / "sections.parquet")
    first = sections.slice(0, 1)
    doubled = pa.concat_tables([first, sections]).sort_by([("record_id", "ascending")])
    pq.write_table(doubled, version / "sections.parquet", row_group_size=2)
    assert pq.ParquetFile(version / "sections.parquet").num_row_groups > 2
    assert section_coverage(version) == whole
