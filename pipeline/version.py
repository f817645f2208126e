"""Versions that decide whether stored records are still valid."""

from __future__ import annotations

__version__ = "0.1.0"

#: Bumped whenever a change to parse/ or normalize/ can change a record.
PARSER_REVISION = "1"


def parser_version() -> str:
    """``<package>.<revision>+vocab.<hash>``: a vocabulary edit changes it too."""
    from pipeline.normalize.vocabulary import load_vocabulary

    return f"{__version__}.{PARSER_REVISION}+vocab.{load_vocabulary().version}"
