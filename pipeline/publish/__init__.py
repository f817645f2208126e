"""Publish stage: records and rejects -> Arrow tables -> an atomic, versioned output folder.

- ``publish(results, out_dir, *, inputs, run_id=None) -> Manifest``: the whole stage (writer.py)
- ``latest_version(out_dir)``, ``read_manifest(version_dir)``: find and read what was published
- prepare.py: what a worker does for publishing, next to parsing (validate, dump, digests)
- tables.py: the Arrow schemas of every table; dedupe.py: the one-record-per-code rule
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    """The writer's names, imported on first use: a worker process that imports a light submodule
    (``pipeline.publish.prepare``) must not pay for pyarrow, which ``writer`` imports."""
    if name in __all__:
        from pipeline.publish import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
