"""Records -> Arrow: explicit schemas for every published table, and the rows that fill them.

``procedures`` has one row per record with nested list/struct columns; its Arrow schema is derived
from ``schemas.ProcedureRecord`` (field names, types, nullability), so a field added to the model
appears in the table without code here, and an empty table still has every column. Arrow types
cannot recurse, so list items keep their nesting ``ITEM_LEVELS`` levels deep in ``procedures``;
deeper items are flattened into the last level in page order (no text is lost; ``items`` and
``procedures.jsonl`` keep the full depth).

The child tables follow dlt's style: nested lists become flat tables keyed to their parent row by
``record_id`` (and ``section_position``). Positions are 0-based, in page order.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

from schemas.models import ProcedureRecord, Reject

#: How many levels of list-item nesting ``procedures.parquet`` keeps (real pages use two or three).
ITEM_LEVELS = 5

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"cannot map union {annotation!r} to Arrow")
        return args[0], True
    return annotation, False


def arrow_type(annotation: Any, _stack: tuple[type, ...] = ()) -> pa.DataType:
    """The Arrow type of a pydantic field annotation (scalars, Literal, list[...], nested models)."""
    annotation, _ = _unwrap_optional(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin = get_origin(annotation)
    if origin is Literal:
        return pa.string()
    if origin is list:
        (inner,) = get_args(annotation)
        return pa.list_(arrow_type(inner, _stack))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(model_fields(annotation, _stack + (annotation,)))
    raise TypeError(f"cannot map {annotation!r} to Arrow")


def _recurses(annotation: Any, model: type) -> bool:
    annotation, _ = _unwrap_optional(annotation)
    if annotation is model:
        return True
    return any(_recurses(a, model) for a in get_args(annotation))


def model_fields(model: type[BaseModel], _stack: tuple[type, ...] = ()) -> list[pa.Field]:
    """Arrow fields of a model; a self-referencing field is cut after ``ITEM_LEVELS`` levels."""
    out = []
    for name, info in model.model_fields.items():
        if _stack.count(model) >= ITEM_LEVELS and _recurses(info.annotation, model):
            continue
        _, optional = _unwrap_optional(info.annotation)
        out.append(pa.field(name, arrow_type(info.annotation, _stack), nullable=optional))
    return out


def model_schema(model: type[BaseModel]) -> pa.Schema:
    return pa.schema(model_fields(model, (model,)))


PROCEDURES_SCHEMA = model_schema(ProcedureRecord)
REJECTS_SCHEMA = model_schema(Reject)

_KEY = [
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("code_system", pa.string(), nullable=False),
    pa.field("code", pa.string(), nullable=False),
]
SECTIONS_SCHEMA = pa.schema(
    _KEY
    + [
        pa.field("position", pa.int32(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("heading", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("n_items", pa.int32(), nullable=False),
        pa.field("n_subsections", pa.int32(), nullable=False),
    ]
)
ITEMS_SCHEMA = pa.schema(
    _KEY
    + [
        pa.field("section_position", pa.int32(), nullable=False),
        pa.field("section_key", pa.string(), nullable=False),
        pa.field("subsection", pa.string()),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("depth", pa.int32(), nullable=False),
        pa.field("parent_position", pa.int32()),
        pa.field("label", pa.string()),
        pa.field("text", pa.string(), nullable=False),
    ]
)
SIMILAR_CODES_SCHEMA = pa.schema(
    _KEY
    + [
        pa.field("similar_code_system", pa.string()),
        pa.field("similar_code", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("url", pa.string()),
    ]
)
DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("kept", pa.string()),
        pa.field("url", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _flatten(items: list[dict[str, Any]], out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in items:
        out.append({"text": item["text"], "label": item["label"]})
        if item["items"]:
            _flatten(item["items"], out)
    return out


def _fit_items(items: list[dict[str, Any]], level: int = 1) -> None:
    """Cut item nesting at ``ITEM_LEVELS``, in place: the items of the last level kept are that
    level's whole subtree in page order, each ``{"text", "label"}`` (no text is lost)."""
    for item in items:
        sub = item["items"]
        if sub:
            if level + 1 >= ITEM_LEVELS:
                item["items"] = _flatten(sub, [])
            else:
                _fit_items(sub, level + 1)


def procedure_row(record: dict[str, Any]) -> dict[str, Any]:
    """One row of ``procedures`` from a validated record as plain JSON data (a parsed line of
    ``procedures.jsonl``): item nesting cut to ``ITEM_LEVELS``, ``source.fetched_at`` back to a datetime.

    The dict is changed in place and returned (the caller parsed it for this row).
    """
    for section in record["sections"]:
        _fit_items(section["items"])
        for sub in section["subsections"]:
            _fit_items(sub["items"])
    source = record["source"]
    fetched = source.get("fetched_at")
    if isinstance(fetched, str):
        source["fetched_at"] = datetime.fromisoformat(fetched)
    return record


def child_rows(
    record: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of ``sections``, ``items`` and ``similar_codes`` for one record (validated, as JSON data).

    Call it before ``procedure_row``, which cuts the item nesting of the same dict. Items are
    numbered in page order (depth first) across a section's own items and its sub-sections'.
    """
    rid, system, code = record["record_id"], record["code_system"], record["code"]
    sections: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for s_pos, section in enumerate(record["sections"]):
        key = section["key"]
        subs = section["subsections"]
        pos = 0
        for heading, group in [(None, section["items"])] + [(sub["heading"], sub["items"]) for sub in subs]:
            # depth-first, iteratively: (item, depth, parent position)
            stack: list[tuple[dict[str, Any], int, int | None]] = [(it, 0, None) for it in reversed(group)]
            while stack:
                item, depth, parent = stack.pop()
                items.append(
                    {
                        "record_id": rid,
                        "code_system": system,
                        "code": code,
                        "section_position": s_pos,
                        "section_key": key,
                        "subsection": heading,
                        "position": pos,
                        "depth": depth,
                        "parent_position": parent,
                        "label": item["label"],
                        "text": item["text"],
                    }
                )
                children = item["items"]
                if children:
                    stack.extend((child, depth + 1, pos) for child in reversed(children))
                pos += 1
        sections.append(
            {
                "record_id": rid,
                "code_system": system,
                "code": code,
                "position": s_pos,
                "key": key,
                "heading": section["heading"],
                "text": section["text"],
                "n_items": pos,
                "n_subsections": len(subs),
            }
        )
    similar = [
        {
            "record_id": rid,
            "code_system": system,
            "code": code,
            "similar_code_system": s["code_system"],
            "similar_code": s["code"],
            "title": s["title"],
            "url": s["url"],
        }
        for s in record["similar_codes"]
    ]
    return sections, items, similar


def to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows -> a table of ``schema`` (a missing key is null), as ``Table.from_pylist`` makes it;
    the columns are gathered here, which costs less than ``from_pylist`` doing it."""
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def chunk_tables(lines: list[bytes]) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table, list[str]]:
    """The ``procedures``, ``sections``, ``items`` and ``similar_codes`` rows of a chunk of validated
    record lines (lines of ``procedures.jsonl``, in order) as tables, and the section keys of each
    record (each key once per record), for section coverage. Pure: publish may run it in a worker."""
    rows: list[dict[str, Any]] = []
    s_rows: list[dict[str, Any]] = []
    i_rows: list[dict[str, Any]] = []
    c_rows: list[dict[str, Any]] = []
    keys: list[str] = []
    for line in lines:
        data = json.loads(line)
        keys.extend({s["key"] for s in data["sections"]})
        s, i, c = child_rows(data)
        rows.append(procedure_row(data))  # last: it changes ``data``
        s_rows += s
        i_rows += i
        c_rows += c
    return (
        to_table(rows, PROCEDURES_SCHEMA),
        to_table(s_rows, SECTIONS_SCHEMA),
        to_table(i_rows, ITEMS_SCHEMA),
        to_table(c_rows, SIMILAR_CODES_SCHEMA),
        keys,
    )
