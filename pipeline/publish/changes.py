"""The change report of a version against the one before it: codes added, removed and changed.

``write_report(previous_dir, folder)`` compares the two versions' ``procedures.jsonl`` (both are
written in ``record_id`` order, so one merging pass reads each file once and holds two records at a
time) and writes into ``folder``:

- ``changes.parquet``: one row per added or removed record (``field`` null) and one per changed
  field of a changed record, with the old and new values as JSON text;
- ``changes.md``: the counts, then the codes added, removed and changed (the first
  ``MAX_LISTED`` of each), each changed field with its old and new value, shortened.

The first version of an output folder has a report too: every record added.

What counts as a change is the content an analyst reads: every record field except the provenance
(``source``: url, path, page hash, fetch time) and the ``parser_version``/``schema_version`` stamps,
so re-fetching an identical page or upgrading the parser without effect changes nothing. ``sections``
is compared section by section (field ``sections.<key>``), and a section whose convenience field
(``risks``, ``summary``, ...) already shows the change is not listed twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.models import LIST_SECTION_KEYS, TEXT_SECTION_KEYS

CHANGES_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("change", pa.string(), nullable=False),  # added | removed | changed
        pa.field("field", pa.string()),  # null for added/removed
        pa.field("old_value", pa.string()),  # JSON text
        pa.field("new_value", pa.string()),
    ]
)
PARQUET = "changes.parquet"
MARKDOWN = "changes.md"
IGNORED = frozenset({"record_id", "source", "parser_version", "schema_version"})
CONVENIENCE = frozenset(TEXT_SECTION_KEYS) | frozenset(LIST_SECTION_KEYS)
MAX_LISTED = 200
MAX_VALUE_CHARS = 160
ROWS_PER_GROUP = 5000
_RECORD_ID = re.compile(rb'^\{"record_id":"((?:[^"\\]|\\.)*)"')


@dataclass
class Counts:
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
        }


@dataclass
class Report:
    """What ``write_report`` found: counts and the rows it listed in the Markdown."""

    counts: Counts = field(default_factory=Counts)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, list[tuple[str, str, str]]]] = field(default_factory=list)
    rows: int = 0


def _record_id(line: bytes) -> str:
    m = _RECORD_ID.match(line)
    if m:
        return json.loads(b'"' + m.group(1) + b'"')  # type: ignore[no-any-return]
    return str(json.loads(line)["record_id"])


def _lines(path: Path | None) -> Iterator[tuple[str, bytes]]:
    if path is None or not path.is_file():
        return
    last = ""
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\n")
            if not line:
                continue
            rid = _record_id(line)
            if rid < last:
                raise ValueError(f"{path} is not in record_id order ({rid!r} after {last!r})")
            last = rid
            yield rid, line


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _sections(record: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in record.get("sections") or []:
        key = s.get("key") or "other"
        name = key if key != "other" else f"other:{s.get('heading') or ''}"
        out.setdefault(name, []).append(s)
    return out


def field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(field, old JSON, new JSON)`` for every content field that differs between two records."""
    out: list[tuple[str, str, str]] = []
    shown: set[str] = set()
    for name in sorted((old.keys() | new.keys()) - IGNORED - {"sections"}):
        a, b = old.get(name), new.get(name)
        if a != b:
            out.append((name, _dump(a), _dump(b)))
            shown.add(name)
    sa, sb = _sections(old), _sections(new)
    for key in sorted(sa.keys() | sb.keys()):
        a, b = sa.get(key), sb.get(key)
        if a != b and key not in shown:
            out.append((f"sections.{key}", _dump(a), _dump(b)))
    return out


class _Rows:
    def __init__(self, path: Path) -> None:
        self.path, self.count, self._buf = path, 0, []  # type: ignore[var-annotated]
        self._writer = pq.ParquetWriter(str(path), CHANGES_SCHEMA)

    def add(
        self, record_id: str, change: str, name: str | None = None, a: str | None = None, b: str | None = None
    ) -> None:
        self._buf.append(
            {"record_id": record_id, "change": change, "field": name, "old_value": a, "new_value": b}
        )
        if len(self._buf) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._writer.write_table(pa.Table.from_pylist(self._buf, schema=CHANGES_SCHEMA))
            self.count += len(self._buf)
            self._buf = []

    def close(self) -> int:
        self._flush()
        self._writer.close()
        return self.count


def compare(previous_jsonl: Path | None, new_jsonl: Path, rows: _Rows | None = None) -> Report:
    """Merge the two record files by ``record_id``; rows go to ``rows`` when given."""
    report = Report()
    c = report.counts
    old_it, new_it = _lines(previous_jsonl), _lines(new_jsonl)
    old, new = next(old_it, None), next(new_it, None)
    while old is not None or new is not None:
        if new is None or (old is not None and old[0] < new[0]):
            assert old is not None
            c.removed += 1
            if len(report.removed) < MAX_LISTED:
                report.removed.append(old[0])
            if rows:
                rows.add(old[0], "removed")
            old = next(old_it, None)
        elif old is None or new[0] < old[0]:
            c.added += 1
            if len(report.added) < MAX_LISTED:
                report.added.append(new[0])
            if rows:
                rows.add(new[0], "added")
            new = next(new_it, None)
        else:
            diffs = [] if old[1] == new[1] else field_changes(json.loads(old[1]), json.loads(new[1]))
            if diffs:
                c.changed += 1
                if len(report.changed) < MAX_LISTED:
                    report.changed.append((new[0], diffs))
                if rows:
                    for name, a, b in diffs:
                        rows.add(new[0], "changed", name, a, b)
            else:
                c.unchanged += 1
            old, new = next(old_it, None), next(new_it, None)
    return report


def _short(text: str) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def markdown(report: Report, previous_run_id: str | None, run_id: str) -> str:
    """The change report as Markdown (``changes.md`` and the flow's changes artifact)."""
    c = report.counts
    lines = [
        f"# Changes in {run_id}",
        "",
        f"Against {previous_run_id}." if previous_run_id else "First version: every record is new.",
        "",
        "| added | removed | changed | unchanged |",
        "|---:|---:|---:|---:|",
        f"| {c.added} | {c.removed} | {c.changed} | {c.unchanged} |",
    ]
    if not (c.added or c.removed or c.changed):
        return "\n".join([*lines, "", "No changes."]) + "\n"
    for title, ids, total in (("Added", report.added, c.added), ("Removed", report.removed, c.removed)):
        if ids:
            lines += ["", f"## {title} ({total})", "", ", ".join(f"`{i}`" for i in ids)]
            if total > len(ids):
                lines.append(f"\n... and {total - len(ids)} more in {PARQUET}")
    if report.changed:
        lines += ["", f"## Changed ({c.changed})", "", "| record | field | old | new |", "|---|---|---|---|"]
        for rid, diffs in report.changed:
            for name, a, b in diffs:
                lines.append(f"| `{rid}` | {name} | {_short(a)} | {_short(b)} |")
        if c.changed > len(report.changed):
            lines.append(f"\n... and {c.changed - len(report.changed)} more records in {PARQUET}")
    return "\n".join(lines) + "\n"


def write_report(
    previous_dir: Path | None,
    folder: Path,
    *,
    previous_run_id: str | None,
    run_id: str,
    same_records: int | None = None,
) -> tuple[Report, dict[str, int | None]]:
    """Write ``changes.parquet`` and ``changes.md`` into ``folder``; returns the report and
    ``{file name: rows}`` of what was written. ``same_records``: the caller knows both versions hold
    the same bytes of records (that many), so nothing is read."""
    rows = _Rows(folder / PARQUET)
    try:
        if same_records is not None:
            report = Report(counts=Counts(unchanged=same_records))
        else:
            report = compare(
                previous_dir / "procedures.jsonl" if previous_dir else None, folder / "procedures.jsonl", rows
            )
    finally:
        report_rows = rows.close()
    report.rows = report_rows
    (folder / MARKDOWN).write_text(markdown(report, previous_run_id, run_id), encoding="utf-8")
    return report, {PARQUET: report_rows, MARKDOWN: None}
