"""CLI commands of the scraper (`procpipe scrape`, `procpipe refresh`); filled in by the scraping work."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the scraper's sub-commands on the main parser."""
