"""``python -m schemas``: write the JSON Schema of every output into ``schemas/*.schema.json``.

The schemas are generated from the pydantic models (the data contract), so they cannot drift from
the code: ``python -m schemas --check`` exits 1 naming each file that is stale or missing, and a test
does the same. Files:

- ``procedure.schema.json``: one record (a line of ``procedures.jsonl``, a ``json/<system>/<code>.json``)
- ``reject.schema.json``: a line of ``rejects.jsonl``
- ``manifest.schema.json``: a version's ``manifest.json``
- ``app-index.schema.json``: ``json/index.json``
- ``search-results.schema.json``: what ``procpipe search --json`` prints

The model validators' rules that JSON Schema can state are added here: the code systems as an enum,
each system's code pattern (``CODE_PATTERNS``) and the ``record_id`` shape.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.models import CODE_PATTERNS, SCHEMA_VERSION, Manifest, ProcedureRecord, Reject

DIALECT = "https://json-schema.org/draft/2020-12/schema"
HERE = Path(__file__).resolve().parent


def _with_header(schema: dict[str, Any], title: str, description: str | None = None) -> dict[str, Any]:
    body = {k: v for k, v in schema.items() if k != "title"}
    if description:
        body["description"] = description
    return {"$schema": DIALECT, "title": title, "x-schema-version": SCHEMA_VERSION, **body}


def ecma_pattern(pattern: str) -> str:
    """A Python regex as JSON Schema (ECMA-262) reads it: ``\\A``/``\\Z`` become ``^``/``$``, and ``\\d``
    becomes ``[0-9]`` (Python's matches any Unicode digit unless ASCII-only; JSON Schema's is ASCII)."""
    return pattern.replace(r"\A", "^").replace(r"\Z", "$").replace(r"\d", "[0-9]")


def procedure_schema() -> dict[str, Any]:
    """ProcedureRecord's schema, with the code rules of its validator written as JSON Schema."""
    schema = ProcedureRecord.model_json_schema()
    props = schema["properties"]
    systems = list(CODE_PATTERNS)
    props["code_system"]["enum"] = systems
    props["record_id"]["pattern"] = f"^(?:{'|'.join(systems)}):[0-9A-Z]+$"
    schema["allOf"] = [
        {
            "if": {"properties": {"code_system": {"const": system}}, "required": ["code_system"]},
            "then": {"properties": {"code": {"pattern": ecma_pattern(pattern.pattern)}}},
        }
        for system, pattern in CODE_PATTERNS.items()
    ]
    return _with_header(schema, "ProcedureRecord")


def _model(model: type[BaseModel]) -> dict[str, Any]:
    return _with_header(model.model_json_schema(), model.__name__)


def _array_of(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    schema = TypeAdapter(list[model]).json_schema()  # type: ignore[valid-type]
    return _with_header(schema, title, description)


def render_schemas() -> dict[str, str]:
    """File name -> the text it must hold (stable key order, a trailing newline)."""
    from pipeline.publish.appfiles import AppIndexEntry
    from pipeline.search import SearchHit

    schemas = {
        "procedure.schema.json": procedure_schema(),
        "reject.schema.json": _model(Reject),
        "manifest.schema.json": _model(Manifest),
        "app-index.schema.json": _array_of(
            AppIndexEntry, "AppIndex", "json/index.json: one entry per record file under json/"
        ),
        "search-results.schema.json": _array_of(
            SearchHit, "SearchResults", "procpipe search --json: hits, best first"
        ),
    }
    return {name: json.dumps(s, indent=2, ensure_ascii=False) + "\n" for name, s in schemas.items()}


def stale(folder: Path = HERE) -> list[str]:
    """Names of schema files in ``folder`` that are missing or differ from the models."""
    out = []
    for name, text in render_schemas().items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def write(folder: Path = HERE) -> list[str]:
    """Write every schema file that changed; returns their names."""
    changed = stale(folder)
    texts = render_schemas()
    for name in changed:
        (folder / name).write_text(texts[name], encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: schemas/{name} (run `python -m schemas`)", file=sys.stderr)
        return 1 if names else 0
    for name in write():
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
