"""Versions published once per test session for the analyst-facing tests (search, schemas, data
package, app files, the analyst guide): from the real pages in ``../shared/corpus`` (each with a
sidecar carrying its URL from ``index.jsonl``) and from the project's own ``raw/`` sample pages.

Built with ``pipeline.process.run_local`` (no Prefect) under pytest's session temp folder and cached
per process, so the modules that use them share one build.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

from pipeline.process import run_local


@cache
def corpus_version(corpus: Path, base: Path) -> Path:
    """An out folder with the shared corpus pages published (``../shared/corpus`` copied to tmp)."""
    raw, out = base / "corpus-raw", base / "corpus-out"
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    for line in (corpus / "index.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        page = raw / entry["path"]
        page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / entry["path"], page)
        sidecar = page.with_name(page.stem + ".meta.json")
        sidecar.write_text(json.dumps({"url": entry["url"]}), encoding="utf-8")
    run_local(raw, out, workers=1)
    return out


@cache
def samples_version(raw: Path, base: Path) -> Path:
    """An out folder with the repository's ``raw/`` sample pages published."""
    out = base / "samples-out"
    shutil.rmtree(out, ignore_errors=True)
    run_local(raw, out, workers=1)
    return out
