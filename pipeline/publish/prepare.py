"""What a worker process does for publishing, right after it parses a page.

Publishing is serial (one process writes the version), so every per-record step that does not need
the other records runs where the record is made, on all cores: the record is validated against
``schemas.ProcedureRecord`` and dumped to its line of ``procedures.jsonl``, the extras' sinks get
their digests of it (``extras.PREPARERS``), and its app file (``json/<system>/<code>.json``) is
written into a staging folder that publish moves into the version in one step (``appfiles``).
The parent is left with picking a winner per code and writing the tables.

A prepared record travels as ``{"prepared": (line, record_id, path, fetched_at, url, sha256,
digests)}``; one that fails validation becomes the same ``{"reject": ...}`` (stage ``validate``) that
publish makes of an invalid record it validates itself. This module imports no pyarrow: workers
start light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.publish import extras
from schemas.models import ProcedureRecord, Reject

#: ``result["prepared"]`` without its last member, the sinks' digests: (line, record_id, source
#: path, fetched_at, url, sha256)
Prepared = tuple[bytes, str, str, Any, "str | None", "str | None"]


def first_error(exc: ValidationError) -> str:
    """``where: message`` of a validation error's first problem."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "record"
    return f"{where}: {err.get('msg')}"


def invalid_record(raw: Any, exc: ValidationError) -> Reject:
    """The reject (stage ``validate``) of a record result that fails ``ProcedureRecord``."""
    src = raw.get("source") if isinstance(raw, dict) else None
    src = src if isinstance(src, dict) else {}
    name = src.get("path") or (raw.get("record_id") if isinstance(raw, dict) else None) or "unknown"
    return Reject(
        source=str(name),
        stage="validate",
        reason=f"invalid record ({first_error(exc)})",
        url=src.get("url") if isinstance(src.get("url"), str) else None,
        sha256=src.get("sha256") if isinstance(src.get("sha256"), str) else None,
    )


def prepare_record(data: dict[str, Any], stage: Path | None) -> dict[str, Any]:
    """A record result (``{"record": data}``'s data, as ``model_dump`` made it, in either mode) made
    ready for publishing: ``{"prepared": Prepared}``, or ``{"reject": ...}`` when it is invalid.

    The line is what publish would write for ``data`` (validated, then ``model_dump_json``), byte
    for byte; ``stage`` is the folder app files are written into (None: publish writes them)."""
    # the validator and serializer model_validate and model_dump_json call, without their wrappers;
    # to_json gives the bytes model_dump_json decodes to text (encoded back here before)
    try:
        record = ProcedureRecord.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        return {"reject": invalid_record(data, exc).model_dump(mode="json")}
    line: bytes = ProcedureRecord.__pydantic_serializer__.to_json(record)
    # the digests read ``data`` itself: validating changes nothing in a record (its validators only
    # check), and the digests read only text fields, alike in both dump modes
    digests = tuple(prepare(line, data, stage) for prepare in extras.PREPARERS)
    src = record.source
    prepared: Prepared = (line, record.record_id, src.path or "", src.fetched_at, src.url, src.sha256)
    return {"prepared": (*prepared, digests)}
