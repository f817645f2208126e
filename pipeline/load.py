"""Analyst helpers: the published tables as pandas DataFrames with the right dtypes.

Every loader reads one table of a published version (``latest`` by default, or a run id from
``processed/versions/``) with Arrow-backed dtypes (``dtype_backend="pyarrow"``: strings, nullable
integers for the typed fields, nested lists and structs kept as they are), the few-valued columns
(``code_system``, a section ``key``, a reject's ``stage``, a change's ``change``) as pandas
categoricals and timestamps in UTC. Nothing published yet raises ``FileNotFoundError`` with a
one-line message saying what to run.

``run_summary`` gives what a person wants after a run (counts, rejects by reason, section coverage)
from the published files alone, so the flow's artifact and the command line say the same thing.
pandas and pyarrow are imported inside the functions: ``import pipeline`` stays light.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from schemas import Manifest

#: Table name -> file in a version folder.
TABLES: dict[str, str] = {
    "procedures": "procedures.parquet",
    "sections": "sections.parquet",
    "items": "items.parquet",
    "similar_codes": "similar_codes.parquet",
    "rejects": "rejects.parquet",
    "duplicates": "duplicates.parquet",
    "changes": "changes.parquet",
}

#: Columns loaded as categoricals, in every table, and per table (``key`` means a section key there).
_CATEGORICAL = ("code_system", "similar_code_system", "stage")
_CATEGORICAL_IN = {"sections": ("key",), "items": ("section_key",), "changes": ("change",)}


def version_dir(out_dir: str | Path = "processed", version: str = "latest") -> Path:
    """The folder of a published version: ``<out_dir>/latest`` or ``<out_dir>/versions/<version>``."""
    base = Path(out_dir)
    if version == "latest":
        path = base / "latest"  # a symlink; LATEST (the run id as text) where symlinks are not possible
        if not path.is_dir() and (base / "LATEST").is_file():
            path = base / "versions" / (base / "LATEST").read_text(encoding="utf-8").strip()
        if not (path / "manifest.json").is_file():
            raise FileNotFoundError(
                f"nothing published in {base} yet (run `procpipe run` or `procpipe process --out-dir {base}`)"
            )
        return path
    path = base / "versions" / version
    if not (path / "manifest.json").is_file():
        known = ", ".join(versions(base)[-3:]) or "none"
        raise FileNotFoundError(f"no version {version!r} in {base / 'versions'} (latest known: {known})")
    return path


def versions(out_dir: str | Path = "processed") -> list[str]:
    """Run ids of the complete versions in ``out_dir``, oldest first (they sort by time)."""
    root = Path(out_dir) / "versions"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())


def load_manifest(out_dir: str | Path = "processed", version: str = "latest") -> Manifest:
    """The manifest of a version: run id, creation time, counts and the file list."""
    from schemas import Manifest

    path = version_dir(out_dir, version) / "manifest.json"
    return Manifest.model_validate_json(path.read_bytes())


def _load(table: str, out_dir: str | Path, version: str) -> pd.DataFrame:
    import pandas as pd

    path = version_dir(out_dir, version) / TABLES[table]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the version is incomplete or older than this table")
    df = pd.read_parquet(path, dtype_backend="pyarrow")
    categorical = _CATEGORICAL + _CATEGORICAL_IN.get(table, ())
    for col in df.columns:
        if col in categorical:
            df[col] = df[col].astype("category")
        elif _is_naive_timestamp(df[col]):
            df[col] = df[col].dt.tz_localize("UTC")
    return df


def _is_naive_timestamp(series: pd.Series) -> bool:
    import pandas as pd
    import pyarrow as pa

    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_timestamp(dtype.pyarrow_dtype) and dtype.pyarrow_dtype.tz is None
    return pd.api.types.is_datetime64_dtype(dtype)  # numpy datetime64 without a zone


def load_procedures(out_dir: str | Path = "processed", version: str = "latest") -> pd.DataFrame:
    """One row per record (``procedures.parquet``): nested ``sections``, ``similar_codes``, ``source``.

    ``fetched_at`` (UTC) is added beside the columns, copied out of ``source`` for easy sorting.
    """
    df = _load("procedures", out_dir, version)
    if "source" in df.columns and "fetched_at" not in df.columns:
        df["fetched_at"] = df["source"].struct.field("fetched_at")
    return df


def load_sections(out_dir: str | Path = "processed", version: str = "latest") -> pd.DataFrame:
    """One row per section of every record, keyed by ``record_id``, in page order."""
    return _load("sections", out_dir, version)


def load_items(out_dir: str | Path = "processed", version: str = "latest") -> pd.DataFrame:
    """One row per list item, with its record, section key and position."""
    return _load("items", out_dir, version)


def load_similar(out_dir: str | Path = "processed", version: str = "latest") -> pd.DataFrame:
    """One row per similar code listed on a page."""
    return _load("similar_codes", out_dir, version)


def load_rejects(out_dir: str | Path = "processed", version: str = "latest") -> pd.DataFrame:
    """One row per input that did not become a record: source, stage, reason, detail."""
    return _load("rejects", out_dir, version)


def load_changes(out_dir: str | Path = "processed", version: str = "latest") -> pd.DataFrame:
    """What changed in a version against the one before it (``changes.parquet``): one row per added
    or removed record and per changed field (``change``, ``field``, ``old_value``/``new_value`` as
    JSON text), with ``code_system`` (categorical) and ``code`` split out of ``record_id``.

    A version published before change reports existed raises ``FileNotFoundError`` saying so.
    """
    import pandas as pd
    import pyarrow as pa

    folder = version_dir(out_dir, version)
    if not (folder / TABLES["changes"]).is_file():
        raise FileNotFoundError(
            f"version {folder.name} has no change report ({TABLES['changes']}): it was published before "
            "change reports existed; publish a new version to get one"
        )
    df = _load("changes", out_dir, version)
    if "record_id" in df.columns and "code_system" not in df.columns:
        ids = [str(rid).partition(":") for rid in df["record_id"]]
        df.insert(1, "code_system", pd.Categorical([i[0] for i in ids]))
        df.insert(2, "code", pd.array([i[2] for i in ids], dtype=pd.ArrowDtype(pa.string())))
    return df


def load_duplicates(out_dir: str | Path = "processed", version: str = "latest") -> pd.DataFrame:
    """One row per page folded into another page's record: ``record_id``, ``source``, ``kept``."""
    return _load("duplicates", out_dir, version)


_REASON_CUT = re.compile(r"\s*\(|:\s")
_FILE_NAME = re.compile(r"\s*\S+\.[A-Za-z][\w.]*")


def reason_group(reason: str) -> str:
    """The general part of a reject reason, for counting: "not a procedure page (Causes)" ->
    "not a procedure page", "broken sidecar 1.meta.json: invalid JSON" -> "broken sidecar"."""
    head = _REASON_CUT.split(reason, maxsplit=1)[0]
    return _FILE_NAME.sub("", head).strip() or reason.strip()


def read_rejects(path: Path) -> list[dict[str, Any]]:
    """The rejects of a version folder as dicts (from ``rejects.jsonl``; no pandas needed)."""
    file = path / "rejects.jsonl"
    if not file.is_file():
        return []
    with file.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def coverage_of(having: Mapping[str, int], records: int) -> dict[str, float]:
    """Section coverage from ``having`` (how many records have each section key) and the number of
    records: every canonical key in vocabulary order, then ``other`` when some record has it."""
    from pipeline.normalize.vocabulary import load_vocabulary

    keys = list(dict.fromkeys(load_vocabulary().procedure.values()))
    if not records:
        return dict.fromkeys(keys, 0.0)
    out = {key: having.get(key, 0) / records for key in keys}
    if having.get("other"):
        out["other"] = having["other"] / records
    return out


def section_coverage(path: Path) -> dict[str, float]:
    """Share of the version's records that have each canonical section key, in vocabulary order.

    Reads ``record_id`` and ``key`` of ``sections.parquet`` one row group at a time (memory stays
    flat with the number of records). The table is in ``record_id`` order, as publish writes it, so
    a record's sections are adjacent: a record whose rows straddle two row groups is counted once.
    """
    import pyarrow.parquet as pq

    records = pq.read_metadata(path / "procedures.parquet").num_rows
    having: Counter[str] = Counter()
    if records:
        table = pq.ParquetFile(path / "sections.parquet")
        last_id: str | None = None
        last_keys: set[str] = set()
        for group in range(table.num_row_groups):
            cols = table.read_row_group(group, columns=["record_id", "key"])
            for rid, key in zip(cols["record_id"].to_pylist(), cols["key"].to_pylist(), strict=True):
                if rid != last_id:
                    having.update(last_keys)
                    last_id, last_keys = rid, set()
                last_keys.add(key)
        having.update(last_keys)
    return coverage_of(having, records)


def run_summary(out_dir: str | Path = "processed", version: str = "latest") -> dict[str, Any]:
    """What a run produced, read back from its files: ``run_id``, ``path``, ``counts``,
    ``rejects_by_reason`` (most frequent first), ``rejects`` (the reject dicts) and ``coverage``."""
    path = version_dir(out_dir, version)
    manifest = load_manifest(out_dir, version)
    rejects = read_rejects(path)
    by_reason = Counter(reason_group(str(r.get("reason", ""))) for r in rejects)
    return {
        "run_id": manifest.run_id,
        "path": Path(out_dir) / "versions" / manifest.run_id,
        "counts": manifest.counts.model_dump(),
        "rejects_by_reason": dict(by_reason.most_common()),
        "rejects": rejects,
        "coverage": section_coverage(path),
    }
