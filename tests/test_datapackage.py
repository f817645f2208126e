"""``datapackage.json``: a Frictionless Data Package v2 describing every Parquet table of a version,
validated with frictionless (the descriptor against the v2 profiles, the tables' rows against their
Table Schemas: types, required fields, enums, primary and foreign keys); DuckDB and pandas read the
same row counts as the manifest says.

frictionless reads Parquet through pandas (nullable integers become NaN floats, lists become numpy
arrays, and its byte count of a Parquet file is None), so its data check is run on the same rows
read with pyarrow and handed over as inline data, under the very schemas the descriptor holds.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import GALLBLADDER_TXT
from frictionless import Package
from published_versions import corpus_version

from pipeline import parse_page
from pipeline.publish import extras, publish, read_manifest
from pipeline.publish.datapackage import PROFILE, describe
from pipeline.publish.extras import file_entry
from schemas import FileEntry


@pytest.fixture(scope="module")
def corpus_out(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus_version(shared_corpus, tmp_path_factory.getbasetemp())


def descriptor(version: Path) -> dict[str, Any]:
    return json.loads((version / "datapackage.json").read_text(encoding="utf-8"))


def inline(version: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """The descriptor with each Parquet file replaced by its rows (read with pyarrow) as inline data."""
    out = copy.deepcopy(desc)
    for res in out["resources"]:
        table = pq.read_table(version / res.pop("path"))
        names = table.column_names
        res["data"] = [names] + [[row[n] for n in names] for row in table.to_pylist()]
        for key in ("format", "mediatype", "bytes", "hash"):
            res.pop(key)
    return out


def errors_of(desc: dict[str, Any]) -> list[str]:
    report = Package.from_descriptor(desc).validate()
    return [f"{task.name}: {e.type}: {e.message}" for task in report.tasks for e in task.errors]


def resource(desc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in desc["resources"] if r["name"] == name)


def test_the_descriptor_is_a_valid_v2_data_package(published: Path) -> None:
    desc = descriptor(published / "latest")
    assert desc["$schema"] == PROFILE
    report = Package.validate_descriptor(desc)
    assert report.valid, [e.message for e in report.errors]
    broken = copy.deepcopy(desc)
    resource(broken, "sections")["schema"]["primaryKey"] = ["no_such_field"]
    assert not Package.validate_descriptor(broken).valid


def test_every_parquet_table_is_described_with_its_hash_size_and_columns(published: Path) -> None:
    version = published / "latest"
    desc = descriptor(version)
    manifest = read_manifest(version)
    tables = sorted(p.name for p in version.glob("*.parquet"))
    assert sorted(r["path"] for r in desc["resources"]) == tables
    for res in desc["resources"]:
        path = version / res["path"]
        entry = manifest.files[res["path"]]
        assert (res["bytes"], res["hash"]) == (entry.bytes, f"sha256:{entry.sha256}")
        assert res["format"] == "parquet" and res["type"] == "table"
        assert [f["name"] for f in res["schema"]["fields"]] == pq.read_schema(path).names
    assert manifest.files["datapackage.json"] == file_entry(version / "datapackage.json", None, fsync=False)


def test_fields_have_types_required_flags_enums_and_keys(published: Path) -> None:
    desc = descriptor(published / "latest")
    fields = {f["name"]: f for f in resource(desc, "procedures")["schema"]["fields"]}
    assert fields["duration_minutes_min"]["type"] == "integer"
    assert "constraints" not in fields["duration_minutes_min"]  # nullable
    assert fields["sections"]["type"] == "array" and fields["source"]["type"] == "object"
    assert fields["record_id"]["constraints"] == {"required": True}
    assert fields["code_system"]["constraints"]["enum"] == ["cpt", "hcpcs", "icd10pcs", "cdt"]
    assert fields["title"]["description"]
    dup_fields = {f["name"]: f for f in resource(desc, "duplicates")["schema"]["fields"]}
    assert dup_fields["fetched_at"]["type"] == "datetime"
    assert resource(desc, "procedures")["schema"]["primaryKey"] == ["record_id"]
    items = resource(desc, "items")["schema"]
    assert items["primaryKey"] == ["record_id", "section_position", "position"]
    to_section = {"resource": "sections", "fields": ["record_id", "position"]}
    assert {"fields": ["record_id", "section_position"], "reference": to_section} in items["foreignKeys"]
    for child in ("sections", "items", "similar_codes", "duplicates"):
        refs = resource(desc, child)["schema"]["foreignKeys"]
        assert {
            "fields": ["record_id"],
            "reference": {"resource": "procedures", "fields": ["record_id"]},
        } in refs


def test_frictionless_validates_every_table_against_its_schema(published: Path) -> None:
    version = published / "latest"
    assert errors_of(inline(version, descriptor(version))) == []


def test_frictionless_validates_the_real_pages_dataset(corpus_out: Path) -> None:
    version = corpus_out / "latest"
    assert errors_of(inline(version, descriptor(version))) == []


def test_broken_keys_and_types_are_caught(published: Path) -> None:
    version = published / "latest"
    good = inline(version, descriptor(version))

    orphan = copy.deepcopy(good)
    row = list(resource(orphan, "items")["data"][1])
    row[0] = "cpt:99999"  # an item of a record that does not exist
    resource(orphan, "items")["data"].append(row)
    assert any("foreign-key" in e for e in errors_of(orphan))

    twice = copy.deepcopy(good)
    resource(twice, "sections")["data"].append(resource(twice, "sections")["data"][1])
    assert any("primary-key" in e for e in errors_of(twice))

    system = copy.deepcopy(good)
    resource(system, "procedures")["data"][1][1] = "icd10cm"
    assert any("constraint-error" in e for e in errors_of(system))


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_duckdb_and_pandas_read_the_same_row_counts(published: Path, corpus_out: Path) -> None:
    con = duckdb.connect()
    for out in (published, corpus_out):
        version = out / "latest"
        manifest = read_manifest(version)
        for res in descriptor(version)["resources"]:
            path = (version / res["path"]).as_posix()
            in_duckdb = count(con, f"SELECT count(*) FROM read_parquet('{path}')")
            in_pandas = len(pd.read_parquet(path, dtype_backend="pyarrow"))
            assert in_duckdb == in_pandas == manifest.files[res["path"]].rows, (out, res["name"])
        jsonl = (version / "procedures.jsonl").as_posix()
        lines = count(con, f"SELECT count(*) FROM read_json('{jsonl}', format='newline_delimited')")
        assert lines == manifest.counts.records == len(pd.read_json(jsonl, lines=True))


def test_a_table_it_does_not_know_is_described_from_its_parquet_schema(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("record_id", pa.string(), nullable=False), pa.field("n", pa.int16())])
    pq.write_table(
        pa.Table.from_pylist([{"record_id": "cpt:63185", "n": 2}], schema=schema), tmp_path / "t.parquet"
    )
    (res,) = describe(tmp_path)["resources"]
    assert res["name"] == "t" and "primaryKey" not in res["schema"]
    assert res["schema"]["fields"] == [
        {"name": "record_id", "type": "string", "constraints": {"required": True}},
        {"name": "n", "type": "integer"},
    ]


def test_it_runs_last_and_describes_tables_other_writers_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def other_writer(folder: Path) -> dict[str, FileEntry]:
        path = folder / "other_table.parquet"
        pq.write_table(pa.table({"record_id": ["cpt:29881"], "change": ["added"]}), path)
        return {path.name: file_entry(path, 1)}

    monkeypatch.setattr(extras, "WRITERS", [*extras.WRITERS, other_writer])
    record = parse_page(GALLBLADDER_TXT.encode(), path="site/cpt/47562.txt")
    publish([{"record": record.model_dump(mode="json")}], tmp_path, inputs=1, run_id="r1")
    desc = descriptor(tmp_path / "latest")
    assert [r["name"] for r in desc["resources"]][-1] == "other_table"
    assert read_manifest(tmp_path / "latest").files["datapackage.json"]
