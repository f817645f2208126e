"""procpipe: medical procedure pages in, validated and versioned datasets out.

Public Python API (mirrors the ``procpipe`` command line):

- ``parse_page(content, *, url=None, path=None, meta=None) -> ProcedureRecord``
- ``load_procedures(out_dir="processed", version="latest") -> pandas.DataFrame`` (and load_sections, ...)
- ``search(query, *, system=None, limit=10, out_dir="processed", version="latest") -> list[dict]``
- ``RejectedPage``: raised by ``parse_page`` with a one-line reason
"""

from __future__ import annotations

from typing import Any

from pipeline.api import parse_page
from pipeline.errors import ProcpipeError, RejectedPage
from pipeline.version import __version__

__all__ = ["ProcpipeError", "RejectedPage", "__version__", "parse_page", "load_procedures"]


def __getattr__(name: str) -> Any:
    # loaders import pandas; keep `import pipeline` light for worker processes
    if name.startswith("load_"):
        from pipeline import load

        return getattr(load, name)
    if name == "search":  # the module pipeline.search is callable too, once imported it is the attribute
        from pipeline.search import search

        return search
    raise AttributeError(name)
