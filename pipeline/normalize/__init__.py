"""Normalize stage: Document -> validated ProcedureRecord (or RejectedPage).

- ``codes``: code system and code from sidecar, URL, file path, then the page.
- ``sections``: blocks -> preamble + sections/subsections keyed by the vocabulary.
- ``names``: the name block -> procedure_name, common_names, technical_term.
- ``fields``: typed fields (duration, hospital stay, recovery, fasting, anesthesia, care settings).
- ``record``: ``build_record`` puts them together.
"""

from __future__ import annotations

from pipeline.normalize.record import build_record

__all__ = ["build_record"]
