"""One record per code: a second page for a ``record_id`` already seen is folded into one record.

Rule (issue 2): the page with the newest ``source.fetched_at`` wins; a page with a ``fetched_at``
beats one without (naive times are taken as UTC); among equals, the last ``source.path`` in sorted
order wins. The rule is a total order, so the winner does not depend on the order results arrive in.
Every folded page is counted in ``duplicates`` and listed in the version's ``duplicates.jsonl`` /
``duplicates.parquet`` (record_id, source, kept, url, sha256, fetched_at); ``rejects`` stays for
pages that did not become a record at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A page that produced a record: enough to pick a winner and to find the record again."""

    record_id: str
    path: str
    fetched_at: datetime | None
    url: str | None = None
    sha256: str | None = None
    ref: Any = None  # where the record itself is kept (e.g. an offset into a spill file)

    def rank(self) -> tuple[bool, datetime, str]:
        ts = self.fetched_at
        if ts is not None and ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return (ts is not None, ts or _NEVER, self.path)


class Folder:
    """Keeps the winning candidate per record_id and the ones folded into it."""

    def __init__(self) -> None:
        self.winners: dict[str, Candidate] = {}
        self.folded: list[tuple[Candidate, str]] = []  # (loser, record_id)

    def beats(self, cand: Candidate) -> bool:
        """Whether ``cand`` would be the winner of its record_id now (a page that loses now never
        wins later: the rule is a total order), so a loser's record need not be kept at all."""
        current = self.winners.get(cand.record_id)
        return current is None or cand.rank() > current.rank()

    def add(self, cand: Candidate) -> None:
        current = self.winners.get(cand.record_id)
        if current is None:
            self.winners[cand.record_id] = cand
        elif cand.rank() > current.rank():
            self.winners[cand.record_id] = cand
            self.folded.append((current, cand.record_id))
        else:
            self.folded.append((cand, cand.record_id))

    @property
    def duplicates(self) -> int:
        return len(self.folded)

    def duplicate_rows(self) -> list[dict[str, Any]]:
        """One row per folded page, sorted by record_id then source path."""
        rows = [
            {
                "record_id": rid,
                "source": c.path,
                "kept": self.winners[rid].path,
                "url": c.url,
                "sha256": c.sha256,
                "fetched_at": c.fetched_at,
            }
            for c, rid in self.folded
        ]
        return sorted(rows, key=lambda r: (r["record_id"], r["source"] or ""))
