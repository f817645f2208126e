"""Published JSON Schemas: generated from the pydantic models, never stale, and every output validates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from published_versions import corpus_version

from pipeline.search import search
from schemas import ProcedureRecord
from schemas.__main__ import render_schemas, stale, write

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_valid(v: jsonschema.Draft202012Validator, instance: Any, where: str) -> None:
    errors = sorted(v.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{where}: {errors[0].message} at {list(errors[0].path)}"


def messages(error: jsonschema.ValidationError) -> list[str]:
    """An error's message and those of its sub-errors (an ``anyOf`` says why each branch failed)."""
    return [error.message] + [m for sub in error.context or [] for m in messages(sub)]


def test_schema_files_are_up_to_date_with_the_models() -> None:
    assert stale() == [], "run `python -m schemas` and commit schemas/*.schema.json"
    assert {p.name for p in SCHEMAS.glob("*.schema.json")} == set(render_schemas())


def test_a_changed_model_makes_its_file_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(write(tmp_path)) == sorted(render_schemas())
    assert stale(tmp_path) == []
    original = ProcedureRecord.model_json_schema
    monkeypatch.setattr(ProcedureRecord, "model_json_schema", lambda: {**original(), "description": "new"})
    assert stale(tmp_path) == ["procedure.schema.json"]
    (tmp_path / "reject.schema.json").unlink()
    assert stale(tmp_path) == ["procedure.schema.json", "reject.schema.json"]


def test_check_command_exits_zero_when_current() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "schemas", "--check"],
        cwd=SCHEMAS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_procedure_schema_has_every_model_field_and_forbids_others() -> None:
    schema = json.loads((SCHEMAS / "procedure.schema.json").read_text(encoding="utf-8"))
    assert set(schema["properties"]) == set(ProcedureRecord.model_fields)
    assert schema["additionalProperties"] is False
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_sample_record_and_reject_validates(published: Path) -> None:
    records = jsonl(published / "latest" / "procedures.jsonl")
    assert len(records) == 3
    v = validator("procedure.schema.json")
    for rec in records:
        assert_valid(v, rec, rec["record_id"])
    r = validator("reject.schema.json")
    for rej in jsonl(published / "latest" / "rejects.jsonl"):
        assert_valid(r, rej, rej["source"])
    manifest = json.loads((published / "latest" / "manifest.json").read_text(encoding="utf-8"))
    assert_valid(validator("manifest.schema.json"), manifest, "manifest.json")


def test_every_real_record_validates(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    out = corpus_version(shared_corpus, tmp_path_factory.getbasetemp())
    records = jsonl(out / "latest" / "procedures.jsonl")
    assert len(records) > 30
    v = validator("procedure.schema.json")
    for rec in records:
        assert_valid(v, rec, rec["record_id"])
        # the app file of a record is the same JSON, so it validates too
        app = json.loads((out / "latest" / "json" / rec["code_system"] / f"{rec['code']}.json").read_bytes())
        assert app == rec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code": "6318"}, "does not match"),  # not a CPT code
        ({"code_system": "icd10cm"}, "is not one of"),
        ({"record_id": "63185"}, "does not match"),
        ({"colour": "red"}, "Additional properties"),
        ({"duration_minutes_min": "thirty"}, "is not of type 'integer'"),
        ({"source": {"sha256": "x", "fetched_at": "yesterday"}}, "is not a 'date-time'"),
        ({"sections": [{"key": "risks"}]}, "'heading' is a required property"),
    ],
)
def test_the_procedure_schema_refuses_what_the_model_refuses(
    published: Path, change: dict[str, Any], message: str
) -> None:
    rec = jsonl(published / "latest" / "procedures.jsonl")[0]
    bad = {**rec, **change}
    errors = [m for e in validator("procedure.schema.json").iter_errors(bad) for m in messages(e)]
    assert any(message in e for e in errors), errors
    with pytest.raises(ValueError):
        ProcedureRecord.model_validate(bad)


def test_app_index_and_search_results_validate(published: Path) -> None:
    index = json.loads((published / "latest" / "json" / "index.json").read_text(encoding="utf-8"))
    assert_valid(validator("app-index.schema.json"), index, "json/index.json")
    hits = search("knee", out_dir=published)
    assert hits
    assert_valid(validator("search-results.schema.json"), hits, "search results")
    assert list(validator("search-results.schema.json").iter_errors([{**hits[0], "rank": 1}]))
