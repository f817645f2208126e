"""procpipe's data contract (pydantic models) and the JSON Schema files generated from them."""

from schemas.models import (
    CODE_PATTERNS,
    SCHEMA_VERSION,
    Counts,
    FileEntry,
    Item,
    Manifest,
    ProcedureRecord,
    Reject,
    Section,
    SimilarCode,
    Source,
    Subsection,
)

__all__ = [
    "CODE_PATTERNS",
    "SCHEMA_VERSION",
    "Counts",
    "FileEntry",
    "Item",
    "Manifest",
    "ProcedureRecord",
    "Reject",
    "Section",
    "SimilarCode",
    "Source",
    "Subsection",
]
