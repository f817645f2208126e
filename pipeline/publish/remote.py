"""Publishing to an fsspec URL (``s3://bucket/processed``...): stage locally, upload, switch last.

A local path or a ``file://`` URL is published in place by ``pipeline.publish`` (atomic rename,
``latest`` symlink). For any other URL, ``stage(url)`` returns a local staging folder holding a
copy of the store's current version (so incremental reuse, the change report and the quality gates
compare against it) and ``Staging.upload(run_id)`` then copies the new version folder to
``<url>/versions/<run_id>/`` (the manifest last) and only then writes ``<url>/LATEST``.

The switch is only as atomic as the store makes one small-object write: readers that go through
``LATEST`` see the old version or the new one, never half of one; ``latest/`` is not written (object
stores have no symlinks). Not done on a URL: the out-dir lock (two runs into the same URL are not kept
apart) and pruning old versions (``--keep`` applies to the staging copy only).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.publish.writer import LATEST_FILE, MANIFEST, RUN_ID_PATTERN, VERSIONS
from pipeline.sources.remote import local_path


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    return fs, str(root).rstrip("/")


@dataclass
class Staging:
    """A local stand-in for an output URL: publish into ``folder``, then ``upload``."""

    url: str
    folder: Path

    def current(self) -> str | None:
        """The run id the store's ``LATEST`` names, or None."""
        fs, root = _fs(self.url)
        try:
            text = fs.cat_file(f"{root}/{LATEST_FILE}").decode("utf-8").strip()
        except FileNotFoundError:
            return None
        return text if RUN_ID_PATTERN.match(text) else None

    def pull_latest(self) -> str | None:
        """Copy the store's current version into the staging folder (as its ``latest``)."""
        from pipeline.publish.writer import switch_latest

        run_id = self.current()
        if run_id is None:
            return None
        fs, root = _fs(self.url)
        dst = self.folder / VERSIONS / run_id
        dst.mkdir(parents=True, exist_ok=True)
        src = f"{root}/{VERSIONS}/{run_id}"
        for name in fs.find(src, withdirs=False):
            rel = str(name)[len(src) :].lstrip("/")
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(name, str(dst / rel))
        switch_latest(self.folder, run_id)
        return run_id

    def upload(self, run_id: str) -> str:
        """Copy ``versions/<run_id>`` to the store (manifest last), then write ``LATEST``; its URL."""
        fs, root = _fs(self.url)
        src = self.folder / VERSIONS / run_id
        dst = f"{root}/{VERSIONS}/{run_id}"
        files = sorted(p for p in src.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == MANIFEST)  # the manifest last: it vouches for the rest
        for path in files:
            target = f"{dst}/{path.relative_to(src).as_posix()}"
            fs.makedirs(target.rpartition("/")[0], exist_ok=True)
            fs.put_file(str(path), target)
        fs.pipe_file(f"{root}/{LATEST_FILE}", (run_id + "\n").encode("utf-8"))
        return f"{self.url.rstrip('/')}/{VERSIONS}/{run_id}"

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def stage(out: str) -> tuple[Path, Staging | None]:
    """The local folder to publish into for ``out``, and the staging to upload from (None: local)."""
    local = local_path(out)
    if local is not None:
        return Path(local), None
    staging = Staging(out, Path(tempfile.mkdtemp(prefix="procpipe-stage-")))
    atexit.register(staging.close)  # a failed run leaves nothing behind either
    staging.pull_latest()
    return staging.folder, staging
