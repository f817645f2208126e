"""Records -> Arrow: explicit schemas for every published table, and the rows that fill them.

``procedures`` has one row per record with nested list/struct columns; its Arrow schema is derived
from ``schemas.ProcedureRecord`` (field names, types, nullability), so a field added to the model
appears in the table without code here, and an empty table still has every column. Arrow types
cannot recurse, so list items keep their nesting ``ITEM_LEVELS`` levels deep in ``procedures``;
deeper items are flattened into the last level in page order (no text is lost; ``items`` and
``procedures.jsonl`` keep the full depth).

The child tables follow dlt's style: nested lists become flat tables keyed to their parent row by
``record_id`` (and ``section_position``). Positions are 0-based, in page order.

``chunk_tables`` builds all four from a chunk of ``procedures.jsonl`` lines with Arrow's JSON reader
and index arithmetic; ``procedure_row``/``child_rows`` are the same tables row by row (the
reference, and the way for the rare chunk Arrow cannot build the same way).
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
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


def arrow_type(annotation: Any, _stack: tuple[type, ...] = (), levels: int = ITEM_LEVELS) -> pa.DataType:
    """The Arrow type of a pydantic field annotation (scalars, Literal, list[...], nested models)."""
    annotation, _ = _unwrap_optional(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin = get_origin(annotation)
    if origin is Literal:
        return pa.string()
    if origin is list:
        (inner,) = get_args(annotation)
        return pa.list_(arrow_type(inner, _stack, levels))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(model_fields(annotation, _stack + (annotation,), levels))
    raise TypeError(f"cannot map {annotation!r} to Arrow")


def _recurses(annotation: Any, model: type) -> bool:
    annotation, _ = _unwrap_optional(annotation)
    if annotation is model:
        return True
    return any(_recurses(a, model) for a in get_args(annotation))


def model_fields(
    model: type[BaseModel], _stack: tuple[type, ...] = (), levels: int = ITEM_LEVELS
) -> list[pa.Field]:
    """Arrow fields of a model; a self-referencing field is cut after ``levels`` levels."""
    out = []
    for name, info in model.model_fields.items():
        if _stack.count(model) >= levels and _recurses(info.annotation, model):
            continue
        _, optional = _unwrap_optional(info.annotation)
        out.append(pa.field(name, arrow_type(info.annotation, _stack, levels), nullable=optional))
    return out


def model_schema(model: type[BaseModel], levels: int = ITEM_LEVELS) -> pa.Schema:
    return pa.schema(model_fields(model, (model,), levels))


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


Chunk = tuple[pa.Table, pa.Table, pa.Table, pa.Table, list[str]]


def chunk_tables(lines: list[bytes]) -> Chunk:
    """The ``procedures``, ``sections``, ``items`` and ``similar_codes`` rows of a chunk of validated
    record lines (lines of ``procedures.jsonl``, in order) as tables, and the section keys of each
    record (each key once per record), for section coverage. Pure: publish may run it in a worker.

    Built by Arrow (``_arrow_chunk_tables``: a quarter of the CPU of the row by row way, and this
    runs for every record in publish's serial tail). A chunk Arrow cannot build the same way (items
    nested deeper than ``procedures`` keeps them, a line Arrow's JSON reader refuses) goes the row by
    row way (``_rows_chunk_tables``), which defines the tables; the tests hold the two equal."""
    built = _arrow_chunk_tables(lines) if lines else None
    return built if built is not None else _rows_chunk_tables(lines)


def _rows_chunk_tables(lines: list[bytes]) -> Chunk:
    """``chunk_tables`` row by row: each line parsed to a dict, its rows built in Python."""
    rows: list[dict[str, Any]] = []
    s_rows: list[dict[str, Any]] = []
    i_rows: list[dict[str, Any]] = []
    c_rows: list[dict[str, Any]] = []
    keys: list[str] = []
    for line in lines:
        data = json.loads(line)
        keys.extend(dict.fromkeys(s["key"] for s in data["sections"]))
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


# --- the Arrow way --------------------------------------------------------------------------------
# Arrow's JSON reader parses the chunk into ``procedures``' columns with items one level deeper than
# ``procedures`` keeps (a record that has items there takes the row by row way, which flattens them)
# and ``source.fetched_at`` as text (converted below as ``procedure_row`` does it). The child tables
# are gathered from its list columns with numpy index arithmetic: items are numbered depth first by
# subtree sizes, computed bottom up, so no Python runs per row.


def _read_schema() -> pa.Schema:
    fields = []
    for f in model_schema(ProcedureRecord, ITEM_LEVELS + 1):
        if f.name == "source":
            sub = [pa.field(x.name, pa.string(), x.nullable) if x.name == "fetched_at" else x for x in f.type]
            f = pa.field(f.name, pa.struct(sub), f.nullable)
        fields.append(f)
    return pa.schema(fields)


_READ_SCHEMA = _read_schema()
_PARSE = pa_json.ParseOptions(explicit_schema=_READ_SCHEMA, unexpected_field_behavior="ignore")
_SOURCE_FIELDS = list(PROCEDURES_SCHEMA.field("source").type)
_SECTIONS_TYPE = PROCEDURES_SCHEMA.field("sections").type
_TIMESTAMP = _SOURCE_FIELDS[[f.name for f in _SOURCE_FIELDS].index("fetched_at")].type


class _NotByArrow(Exception):
    """The chunk needs the row by row way (a null list, or items nested too deep)."""


def _fields(array: pa.StructArray) -> dict[str, pa.Array]:
    return dict(zip([f.name for f in array.type], array.flatten(), strict=True))


def _children(lists: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """A list array's offsets (from 0, as int64) and its values."""
    if lists.null_count:
        raise _NotByArrow
    offsets = lists.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], lists.flatten()


def _cumsum0(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, np.int64)
    np.cumsum(values, out=out[1:])
    return out


def _owners(offsets: np.ndarray) -> np.ndarray:
    """For each value of a list array, the index of its list."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def _walk(
    lists: pa.Array,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array, pa.Array]]]:
    """The items of each list (a group) in ``lists``, all levels: the group's total of items, and per
    level (group, position in the group, parent's position or -1, label, text)."""
    levels: list[tuple[np.ndarray, pa.Array, pa.Array]] = []  # (offsets, label, text)
    for depth in range(ITEM_LEVELS + 1):
        offsets, values = _children(lists)
        if depth == ITEM_LEVELS:
            if len(values):
                raise _NotByArrow
            break
        f = _fields(values)
        levels.append((offsets, f["label"], f["text"]))
        if not len(values):
            break
        lists = f["items"]
    # subtree sizes, bottom up: an item and all items below it
    sizes: list[np.ndarray] = [np.ones(len(levels[-1][1]), np.int64)]
    for offsets, _, _ in reversed(levels[1:]):
        sums = _cumsum0(sizes[0])
        sizes.insert(0, 1 + sums[offsets[1:]] - sums[offsets[:-1]])
    # positions, top down: a parent's, plus one, plus the sizes of the siblings before
    out = []
    group = position = np.zeros(0, np.int64)
    for depth, ((offsets, label, text), size) in enumerate(zip(levels, sizes, strict=True)):
        owner = _owners(offsets)
        sums = _cumsum0(size)
        if depth == 0:
            totals = sums[offsets[1:]] - sums[offsets[:-1]]
            parent = np.full(len(owner), -1, np.int64)
            group, start = owner, 0
        else:
            parent = position[owner]
            group, start = group[owner], parent + 1
        position = start + sums[:-1] - sums[offsets[:-1]][owner]
        out.append((group, position, parent, label, text))
    return totals, out


def _int32(values: np.ndarray, nulls: np.ndarray | None = None) -> pa.Array:
    return pa.array(values.astype(np.int32), pa.int32(), mask=nulls)


def _arrow_chunk_tables(lines: list[bytes]) -> Chunk | None:
    """``chunk_tables`` by Arrow, or None for a chunk it cannot build the same way."""
    data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
    options = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
    try:
        read = pa_json.read_json(pa.BufferReader(data), read_options=options, parse_options=_PARSE)
    except pa.ArrowException:
        return None
    if read.num_rows != len(lines):
        return None
    read = read.combine_chunks()
    cols = {name: read.column(name).chunk(0) for name in read.column_names}
    try:
        children = _children_tables(cols)
    except _NotByArrow:
        return None
    source = cols["source"]
    if source.null_count:
        return None
    parts = _fields(source)
    fetched = [None if v is None else datetime.fromisoformat(v) for v in parts["fetched_at"].to_pylist()]
    parts["fetched_at"] = pa.array(fetched, _TIMESTAMP)
    cols["source"] = pa.StructArray.from_arrays(
        [parts[f.name] for f in _SOURCE_FIELDS], fields=_SOURCE_FIELDS
    )
    cols["sections"] = cols["sections"].cast(_SECTIONS_TYPE)
    procedures = pa.Table.from_arrays(
        [cols[name] for name in PROCEDURES_SCHEMA.names], schema=PROCEDURES_SCHEMA
    )
    return (procedures, *children)


def _children_tables(cols: dict[str, pa.Array]) -> tuple[pa.Table, pa.Table, pa.Table, list[str]]:
    """``sections``, ``items``, ``similar_codes`` and the section keys from the chunk's columns."""
    key_cols = [cols["record_id"], cols["code_system"], cols["code"]]

    # sections
    sec_offsets, secs = _children(cols["sections"])
    sec = _fields(secs)
    sec_record = _owners(sec_offsets)
    sec_index = pa.array(sec_record)
    sec_position = np.arange(len(sec_record)) - sec_offsets[:-1][sec_record]
    sub_offsets, subs = _children(sec["subsections"])
    sub = _fields(subs)
    sub_section = _owners(sub_offsets)

    # items: the sections' own, then each sub-section's, numbered on across the section
    sec_totals, sec_levels = _walk(sec["items"])
    sub_totals, sub_levels = _walk(sub["items"])
    sub_sums = _cumsum0(sub_totals)
    sub_start = sec_totals[sub_section] + sub_sums[:-1] - sub_sums[sub_offsets[:-1]][sub_section]
    n_items = sec_totals + sub_sums[sub_offsets[1:]] - sub_sums[sub_offsets[:-1]]
    first_row = _cumsum0(n_items)
    section_of, position_of, parent_of, subsection_of, labels, texts = [], [], [], [], [], []
    for group, position, parent, label, text in sec_levels:
        section_of.append(group)
        position_of.append(position)
        parent_of.append(parent)
        subsection_of.append(np.full(len(group), -1, np.int64))
        labels.append(label)
        texts.append(text)
    for group, position, parent, label, text in sub_levels:
        start = sub_start[group]
        section_of.append(sub_section[group])
        position_of.append(position + start)
        parent_of.append(np.where(parent < 0, -1, parent + start))
        subsection_of.append(group)
        labels.append(label)
        texts.append(text)
    depth_of = [
        np.full(len(g), d, np.int64)
        for levels in (sec_levels, sub_levels)
        for d, (g, *_) in enumerate(levels)
    ]
    section_i = np.concatenate(section_of) if section_of else np.zeros(0, np.int64)
    position = np.concatenate(position_of) if position_of else np.zeros(0, np.int64)
    order = np.empty(len(position), np.int64)
    order[first_row[section_i] + position] = np.arange(len(position))  # rows in page order
    section_i, position = section_i[order], position[order]
    parent = np.concatenate(parent_of)[order] if parent_of else position
    subsection = np.concatenate(subsection_of)[order] if subsection_of else position
    depth = np.concatenate(depth_of)[order] if depth_of else position
    take = pa.array(order)
    item_section = pa.array(section_i)
    item_record = pa.array(sec_record[section_i])
    items = pa.Table.from_arrays(
        [
            *(c.take(item_record) for c in key_cols),
            _int32(sec_position[section_i]),
            sec["key"].take(item_section),
            sub["heading"].take(pa.array(subsection, mask=subsection < 0)),
            _int32(position),
            _int32(depth),
            _int32(parent, parent < 0),
            (pa.concat_arrays(labels) if labels else pa.array([], pa.string())).take(take),
            (pa.concat_arrays(texts) if texts else pa.array([], pa.string())).take(take),
        ],
        schema=ITEMS_SCHEMA,
    )
    sections = pa.Table.from_arrays(
        [
            *(c.take(sec_index) for c in key_cols),
            _int32(sec_position),
            sec["key"],
            sec["heading"],
            sec["text"],
            _int32(n_items),
            _int32(np.diff(sub_offsets)),
        ],
        schema=SECTIONS_SCHEMA,
    )

    # similar codes
    sim_offsets, sims = _children(cols["similar_codes"])
    sim = _fields(sims)
    sim_record = pa.array(_owners(sim_offsets))
    similar = pa.Table.from_arrays(
        [*(c.take(sim_record) for c in key_cols), sim["code_system"], sim["code"], sim["title"], sim["url"]],
        schema=SIMILAR_CODES_SCHEMA,
    )

    all_keys = sec["key"].to_pylist()
    keys: list[str] = []
    for a, b in zip(sec_offsets[:-1].tolist(), sec_offsets[1:].tolist(), strict=True):
        keys.extend(dict.fromkeys(all_keys[a:b]))
    return sections, items, similar, keys
