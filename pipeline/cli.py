"""The procpipe command line (placeholder until the CLI work lands)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("procpipe: not built yet", file=sys.stderr)
    return 1
