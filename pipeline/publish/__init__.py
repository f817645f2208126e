"""Publish stage: records and rejects -> Arrow tables -> an atomic, versioned output folder.

- ``publish(results, out_dir, *, inputs, run_id=None) -> Manifest``: the whole stage (writer.py)
- ``latest_version(out_dir)``, ``read_manifest(version_dir)``: find and read what was published
- tables.py: the Arrow schemas of every table; dedupe.py: the one-record-per-code rule
"""

from __future__ import annotations

from pipeline.publish.writer import (
    LATEST_FILE,
    LATEST_LINK,
    MANIFEST,
    VERSIONS,
    latest_version,
    new_run_id,
    publish,
    read_manifest,
    switch_latest,
)

__all__ = [
    "LATEST_FILE",
    "LATEST_LINK",
    "MANIFEST",
    "VERSIONS",
    "latest_version",
    "new_run_id",
    "publish",
    "read_manifest",
    "switch_latest",
]
