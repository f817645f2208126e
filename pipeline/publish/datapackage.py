"""``datapackage.json``: a Frictionless Data Package (v2) describing every Parquet table of a version.

Each table becomes a tabular resource with its path, format, size, sha256 and a Table Schema: the
fields with their types (read from the Parquet file itself, so the description matches the bytes),
``required`` for non-nullable columns, the allowed code systems, a description of each known
column, primary keys and foreign keys (child tables point at ``procedures.record_id``; items at
their section). A Parquet table this module does not know (say, a later ``changes.parquet``) is
still described, from its Parquet schema alone.

This writer runs last (``extras.LAST``): it describes what the writers before it left in the folder.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import CODE_PATTERNS, SCHEMA_VERSION, FileEntry
from schemas.models import Stage

DATAPACKAGE = "datapackage.json"
PROFILE = "https://datapackage.org/profiles/2.0/datapackage.json"
TABLE_SCHEMA_PROFILE = "https://datapackage.org/profiles/2.0/tableschema.json"
PARQUET_MEDIATYPE = "application/vnd.apache.parquet"

_KEY_DOC = {
    "record_id": "the record's id, '<code_system>:<code>' (cpt:63185)",
    "code_system": "code system: cpt, hcpcs, icd10pcs or cdt",
    "code": "the code, upper-case (63185, A4253)",
}

#: table -> (description, primary key, foreign keys as (fields, resource, reference fields), columns)
TABLES: dict[str, tuple[str, list[str], list[tuple[list[str], str, list[str]]], dict[str, str]]] = {
    "procedures": (
        "One row per procedure record; nested sections, similar codes and source kept as lists and "
        "objects (schemas/procedure.schema.json describes a record in full).",
        ["record_id"],
        [],
        {
            **_KEY_DOC,
            "title": "the page title",
            "procedure_name": "the procedure's name as the page gives it",
            "common_names": "everyday names of the procedure",
            "technical_term": "the medical or technical term",
            "preamble": "text before the first section",
            "sections": "the page's sections in page order: key, heading, text, items, subsections",
            "similar_codes": "codes the page lists as similar: code_system, code, title, url",
            "source": "provenance: url, path, sha256, fetched_at, content_type",
            "parser_version": "the parser (and vocabulary) version that made the record",
            "schema_version": "the record schema version",
        },
    ),
    "sections": (
        "One row per section of every record, in page order.",
        ["record_id", "position"],
        [(["record_id"], "procedures", ["record_id"])],
        {
            **_KEY_DOC,
            "position": "0-based position of the section on its page",
            "key": "canonical section key (vocabulary), or 'other'",
            "heading": "the heading as written",
            "text": "the section's paragraphs, joined by a blank line",
            "n_items": "list items in the section (all depths, sub-sections included)",
            "n_subsections": "sub-headings in the section",
        },
    ),
    "items": (
        "One row per list item of every section, in page order (nesting by depth and parent_position).",
        ["record_id", "section_position", "position"],
        [
            (["record_id"], "procedures", ["record_id"]),
            (["record_id", "section_position"], "sections", ["record_id", "position"]),
        ],
        {
            **_KEY_DOC,
            "section_position": "position of the item's section (sections.position)",
            "section_key": "canonical key of the item's section",
            "subsection": "heading of the item's sub-section, or null",
            "position": "0-based position of the item within its section",
            "depth": "nesting depth, 0 at the top level",
            "parent_position": "position of the parent item, or null at the top level",
            "label": "a leading 'Label:' of the item, without the colon",
            "text": "the item's text",
        },
    ),
    "similar_codes": (
        "One row per similar code listed on a record's page.",
        [],
        [(["record_id"], "procedures", ["record_id"])],
        {
            **_KEY_DOC,
            "similar_code_system": "code system of the similar code, when known",
            "similar_code": "the similar code",
            "title": "the similar code's title as linked",
            "url": "the link's address",
        },
    ),
    "rejects": (
        "One row per input that did not become a record.",
        [],
        [],
        {
            "source": "the input's path under the raw folder",
            "stage": "the stage that refused it: read, decode, parse, normalize, validate or publish",
            "reason": "why, in one line",
            "detail": "more detail, when any",
            "url": "the page's address, when known",
            "sha256": "sha256 of the input's bytes, when read",
        },
    ),
    "changes": (
        "What changed against the previous version: one row per added or removed record and per "
        "changed field of a changed record.",
        [],
        [],  # a removed record is not in this version's procedures
        {
            "record_id": _KEY_DOC["record_id"],
            "change": "added, removed or changed",
            "field": "the changed field (sections.<key> for a section), null for added/removed",
            "old_value": "the field's value in the previous version, as JSON text",
            "new_value": "the field's value in this version, as JSON text",
        },
    ),
    "duplicates": (
        "One row per page folded into another page's record (one record per code).",
        [],
        [(["record_id"], "procedures", ["record_id"])],
        {
            "record_id": _KEY_DOC["record_id"],
            "source": "the folded page",
            "kept": "the page whose record was kept",
            "url": "the folded page's address",
            "sha256": "sha256 of the folded page",
            "fetched_at": "when the folded page was fetched",
        },
    ),
}
_ORDER = list(TABLES)
#: Columns whose values come from a closed set (the data contract's).
_ENUMS: dict[str, list[str]] = {
    "code_system": list(CODE_PATTERNS),
    "similar_code_system": list(CODE_PATTERNS),
    "stage": list(get_args(Stage)),
}


def field_type(dtype: pa.DataType) -> str:
    """Table Schema type of an Arrow type."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype):
        return "string"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_timestamp(dtype):
        return "datetime"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_time(dtype):
        return "time"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        return "array"
    if pa.types.is_struct(dtype) or pa.types.is_map(dtype):
        return "object"
    return "any"


def table_schema(name: str, schema: pa.Schema) -> dict[str, Any]:
    """The Table Schema of one Parquet table."""
    _, primary, foreign, docs = TABLES.get(name, ("", [], [], {}))
    fields: list[dict[str, Any]] = []
    for f in schema:
        field: dict[str, Any] = {"name": f.name, "type": field_type(f.type)}
        if f.name in docs:
            field["description"] = docs[f.name]
        constraints: dict[str, Any] = {}
        if not f.nullable or f.name in primary:
            constraints["required"] = True
        if f.name in _ENUMS and field["type"] == "string":
            constraints["enum"] = _ENUMS[f.name]
        if constraints:
            field["constraints"] = constraints
        fields.append(field)
    out: dict[str, Any] = {"$schema": TABLE_SCHEMA_PROFILE, "fields": fields}
    if primary:
        out["primaryKey"] = primary
    if foreign:
        out["foreignKeys"] = [
            {"fields": fields_, "reference": {"resource": resource, "fields": ref}}
            for fields_, resource, ref in foreign
        ]
    return out


def _tables(folder: Path) -> list[Path]:
    found = {p.stem: p for p in folder.glob("*.parquet") if p.is_file()}
    known = [found.pop(n) for n in _ORDER if n in found]
    return known + [found[n] for n in sorted(found)]


def describe(folder: Path, files: dict[str, FileEntry] | None = None) -> dict[str, Any]:
    """The data package descriptor of a version folder (hashes taken from ``files`` when given)."""
    from pipeline.publish.extras import file_entry

    files = files or {}
    run_id = folder.name.removeprefix(".tmp-")
    resources = []
    for path in _tables(folder):
        name = path.stem
        entry = files.get(path.name) or file_entry(path, None, fsync=False)
        rows = pq.read_metadata(path).num_rows
        resource: dict[str, Any] = {
            "name": name,
            "type": "table",
            "path": path.name,
            "format": "parquet",
            "mediatype": PARQUET_MEDIATYPE,
            "bytes": entry.bytes,
            "hash": f"sha256:{entry.sha256}",
        }
        description = TABLES.get(name, ("",))[0]
        resource["description"] = f"{description} {rows} rows.".strip()
        resource["schema"] = table_schema(name, pq.read_schema(path))
        resources.append(resource)
    return {
        "$schema": PROFILE,
        "name": "procpipe",
        "id": f"procpipe:{run_id}",
        "title": "procpipe: medical procedure records",
        "description": (
            f"Procedure code pages parsed into validated records (schema {SCHEMA_VERSION}), run {run_id}. "
            "procedures.jsonl holds the same records as JSON; json/ holds one file per record."
        ),
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "resources": resources,
    }


def write_datapackage(folder: Path) -> dict[str, FileEntry]:
    """Publish-time writer (runs last): ``datapackage.json`` describing the folder's Parquet tables."""
    from pipeline.publish.extras import file_entry

    path = folder / DATAPACKAGE
    path.write_text(json.dumps(describe(folder), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return {DATAPACKAGE: file_entry(path, None)}
