"""``chunk_tables`` built by Arrow equals the row-by-row reference, table for table.

``tables._arrow_chunk_tables`` (Arrow's JSON reader plus index arithmetic) must give exactly the
tables of ``tables._rows_chunk_tables`` (each line parsed, its rows built in Python): same schemas,
values, row order and nulls, and the same section keys. Checked on the sample pages in ``raw/``, on
hand-made odd records (no sections, empty lists, nesting at and past ``ITEM_LEVELS``, nulls,
unicode, time zones) and on random records. Records Arrow cannot build the same way (items nested
deeper than ``procedures`` keeps them) must go the reference way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.process import process_batch
from pipeline.publish import tables
from pipeline.sources.files import is_sidecar
from schemas import ProcedureRecord

RAW = Path(__file__).resolve().parents[1] / "raw"
NAMES = ("procedures", "sections", "items", "similar_codes")


def line(data: dict[str, Any]) -> bytes:
    """A validated record as publish hands it to ``chunk_tables`` (``model_dump_json``, no newline)."""
    return ProcedureRecord.model_validate(data).model_dump_json().encode("utf-8")


def assert_same(got: tables.Chunk, want: tables.Chunk) -> None:
    for name, a, b in zip(NAMES, got[:4], want[:4], strict=True):
        assert a.schema == b.schema, name
        assert a.to_pylist() == b.to_pylist(), name  # a readable diff first
        assert a.equals(b), name
        assert all(c.num_chunks == 1 for c in a.columns), name
    assert got[4] == want[4]


def assert_fast(lines: list[bytes]) -> None:
    """The Arrow way builds the chunk, and as the reference does."""
    fast = tables._arrow_chunk_tables(lines)
    assert fast is not None, "the Arrow way refused a chunk it should build"
    assert_same(fast, tables._rows_chunk_tables(lines))
    assert_same(tables.chunk_tables(lines), fast)


def base(code: str = "29881", **extra: Any) -> dict[str, Any]:
    return {
        "record_id": f"cpt:{code}",
        "code_system": "cpt",
        "code": code,
        "source": {"sha256": "0" * 64},
        "parser_version": "test",
        **extra,
    }


def item(text: str, *children: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    return {"text": text, "label": label, "items": list(children)}


def chain(depth: int, prefix: str = "level") -> dict[str, Any]:
    """One item with ``depth`` levels in all (a single child at each level)."""
    node = item(f"{prefix} {depth}")
    for level in range(depth - 1, 0, -1):
        node = item(f"{prefix} {level}", node, label=f"L{level}")
    return node


def odd_records() -> list[dict[str, Any]]:
    tree = [
        item("first", item("first.a", item("first.a.i")), item("first.b")),
        item("second", label=""),
        item("", item("third.a", label="Note")),
    ]
    return [
        base("10000"),  # no sections, no similar codes, every optional field null
        base("10001", sections=[{"key": "summary", "heading": "Summary", "text": None}]),
        base(
            "10002",
            title="Knie – arthroskopie “quoted” \\ back\\slash \u2028 line sep \x00 nul",
            common_names=["膝关节镜", "🦵 scope", ""],
            preamble=["first", "second"],
            sections=[
                {"key": "risks", "heading": "Risks", "text": "Some\n\nparagraphs", "items": tree},
                {
                    "key": "preparation",
                    "heading": "Preparation",
                    "subsections": [
                        {"heading": "Before", "items": [item("fast", item("no food"))]},
                        {"heading": "Empty", "text": "nothing listed"},
                        {"heading": "After", "items": [item("rest"), item("walk", item("slowly"))]},
                    ],
                },
                {  # own items, then sub-sections' items numbered on after them
                    "key": "risks",
                    "heading": "More risks",
                    "items": [item("own", item("own.child"))],
                    "subsections": [{"heading": "Rare", "items": copy.deepcopy(tree)}],
                },
                {"key": "other", "heading": "Ünknown héading", "text": "ß", "subsections": []},
            ],
            similar_codes=[
                {"code": "29880"},
                {"code_system": "cpt", "code": "29882", "title": "Scope", "url": "https://x.test/29882"},
            ],
            duration_minutes_min=30,
            duration_minutes_max=60,
            anesthesia_types=["general"],
            source={
                "sha256": "1" * 64,
                "url": "https://x.test/29881",
                "path": "site/a.html",
                "fetched_at": "2026-03-01T12:30:15.123456+05:30",
                "content_type": "text/html",
            },
        ),
        base("10003", source={"sha256": "2" * 64, "fetched_at": "2026-03-01T12:00:00Z"}),
        base("10004", source={"sha256": "3" * 64, "fetched_at": "2026-03-01T08:00:00"}),  # naive
        base("10005", source={"sha256": "4" * 64, "fetched_at": "1999-12-31T23:59:59.5-08:00"}),
        base(  # items exactly as deep as ``procedures`` keeps them, in a section and a sub-section
            "10006",
            sections=[
                {
                    "key": "recovery",
                    "heading": "Recovery",
                    "items": [chain(tables.ITEM_LEVELS)],
                    "subsections": [{"heading": "Later", "items": [chain(tables.ITEM_LEVELS, "sub")]}],
                }
            ],
        ),
        base(
            "10007",
            sections=[{"key": "equipment", "heading": "Equipment", "subsections": [{"heading": "x"}]}],
        ),
    ]


def deep_records() -> list[dict[str, Any]]:
    """Items one and three levels deeper than ``procedures`` keeps, in a section and a sub-section."""
    return [
        base(
            "20000", sections=[{"key": "risks", "heading": "Risks", "items": [chain(tables.ITEM_LEVELS + 1)]}]
        ),
        base(
            "20001",
            sections=[
                {
                    "key": "risks",
                    "heading": "Risks",
                    "items": [item("flat")],
                    "subsections": [{"heading": "Deep", "items": [item("a"), chain(tables.ITEM_LEVELS + 3)]}],
                }
            ],
        ),
    ]


def sample_lines() -> list[bytes]:
    paths = sorted(p.relative_to(RAW).as_posix() for p in RAW.rglob("*") if p.is_file() and not is_sidecar(p))
    records = [r["record"] for r in process_batch(paths, str(RAW)) if "record" in r]
    assert len(records) > 30
    return [line(r) for r in records]


def test_sample_pages_build_the_same_tables_by_arrow() -> None:
    lines = sample_lines()
    assert any(b'"fetched_at":"' in x for x in lines)  # time stamps are covered
    assert_fast(lines)
    assert_fast([x + b"\n" for x in lines])  # lines as read back from procedures.jsonl
    for one in lines[:5]:
        assert_fast([one])


def test_odd_records_build_the_same_tables_by_arrow() -> None:
    lines = [line(r) for r in odd_records()]
    assert_fast(lines)
    for one in lines:
        assert_fast([one])


def test_item_numbering_runs_depth_first_across_a_sections_sub_sections() -> None:
    """Pinned by hand, not only against the reference: position, depth and parent of each item."""
    [record] = [r for r in odd_records() if r["code"] == "10002"]
    items = tables.chunk_tables([line(record)])[2].to_pylist()
    assert [
        (i["subsection"], i["position"], i["depth"], i["parent_position"], i["text"])
        for i in items
        if i["section_position"] == 2
    ] == [
        (None, 0, 0, None, "own"),
        (None, 1, 1, 0, "own.child"),
        ("Rare", 2, 0, None, "first"),
        ("Rare", 3, 1, 2, "first.a"),
        ("Rare", 4, 2, 3, "first.a.i"),
        ("Rare", 5, 1, 2, "first.b"),
        ("Rare", 6, 0, None, "second"),
        ("Rare", 7, 0, None, ""),
        ("Rare", 8, 1, 7, "third.a"),
    ]
    sections = tables.chunk_tables([line(record)])[1].to_pylist()
    assert [(s["n_items"], s["n_subsections"]) for s in sections] == [(7, 0), (5, 3), (9, 1), (0, 0)]


def test_items_nested_deeper_than_procedures_keeps_go_the_reference_way() -> None:
    deep = [line(r) for r in deep_records()]
    mixed = [line(r) for r in odd_records()[:3]] + deep
    for lines in ([deep[0]], [deep[1]], mixed):
        assert tables._arrow_chunk_tables(lines) is None
        assert_same(tables.chunk_tables(lines), tables._rows_chunk_tables(lines))
    # the reference flattens the items below the last level kept: every text is still there
    proc = tables.chunk_tables([deep[0]])[0].column("sections").to_pylist()
    level = proc[0][0]["items"][0]
    for _ in range(tables.ITEM_LEVELS - 2):
        level = level["items"][0]
    last = [f"level {tables.ITEM_LEVELS}", f"level {tables.ITEM_LEVELS + 1}"]
    assert [i["text"] for i in level["items"]] == last  # the last level holds its whole subtree


def test_an_empty_chunk_gives_empty_tables_with_every_column() -> None:
    built = tables.chunk_tables([])
    for table, schema in zip(
        built[:4],
        (tables.PROCEDURES_SCHEMA, tables.SECTIONS_SCHEMA, tables.ITEMS_SCHEMA, tables.SIMILAR_CODES_SCHEMA),
        strict=True,
    ):
        assert table.num_rows == 0 and table.schema == schema
    assert built[4] == []


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=6)
_maybe = st.none() | _text
_items = st.recursive(
    st.builds(lambda t, lab: item(t, label=lab), _text, _maybe),
    lambda children: st.builds(
        lambda t, lab, kids: item(t, *kids, label=lab), _text, _maybe, st.lists(children, max_size=3)
    ),
    max_leaves=12,
)


def _wrapped(inner: dict[str, Any], levels: int) -> dict[str, Any]:
    for n in range(levels):
        inner = item(f"wrap {n}", inner)
    return inner


# some items under a few more levels, so that chunks on both sides of ``ITEM_LEVELS`` come up
_items = _items | st.builds(_wrapped, _items, st.integers(1, tables.ITEM_LEVELS - 1))
_subsection = st.fixed_dictionaries({"heading": _text, "text": _maybe, "items": st.lists(_items, max_size=3)})
_section = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["summary", "risks", "other", "recovery"]),
        "heading": _text,
        "text": _maybe,
        "items": st.lists(_items, max_size=3),
        "subsections": st.lists(_subsection, max_size=2),
    }
)
_similar = st.fixed_dictionaries(
    {"code_system": st.none() | st.just("cpt"), "code": _text, "title": _maybe, "url": _maybe}
)


@st.composite
def _records(draw: st.DrawFn) -> list[bytes]:
    out = []
    for n in range(draw(st.integers(1, 4))):
        record = base(
            f"3{n:04d}",
            title=draw(_maybe),
            sections=draw(st.lists(_section, max_size=4)),
            similar_codes=draw(st.lists(_similar, max_size=2)),
            fasting_hours_min=draw(st.none() | st.integers(0, 24)),
        )
        out.append(line(record))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records())
def test_random_records_build_the_same_tables(lines: list[bytes]) -> None:
    """Either way the tables are the same; the Arrow way refuses only items nested too deep."""
    fast = tables._arrow_chunk_tables(lines)
    want = tables._rows_chunk_tables(lines)
    if fast is None:
        assert _deepest(lines) > tables.ITEM_LEVELS
    else:
        assert _deepest(lines) <= tables.ITEM_LEVELS
        assert_same(fast, want)
    assert_same(tables.chunk_tables(lines), want)


def _deepest(lines: list[bytes]) -> int:
    def depth(items: list[dict[str, Any]]) -> int:
        return max((1 + depth(i["items"]) for i in items), default=0)

    deepest = 0
    for x in lines:
        record = ProcedureRecord.model_validate_json(x).model_dump()
        for s in record["sections"]:
            deepest = max(deepest, depth(s["items"]), *(depth(u["items"]) for u in s["subsections"]))
    return deepest


@pytest.mark.parametrize("size", [1, 7])
def test_pieces_joined_again_equal_the_whole_chunk(size: int) -> None:
    """The writer builds a chunk in pieces and joins them: the same rows as one piece."""
    lines = [line(r) for r in odd_records()]
    whole = tables.chunk_tables(lines)
    pieces = [tables.chunk_tables(lines[i : i + size]) for i in range(0, len(lines), size)]
    for k, name in enumerate(NAMES):
        joined = pa.concat_tables([p[k] for p in pieces])
        assert joined.equals(whole[k]), name
