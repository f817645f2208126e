"""The data contract: pydantic v2 models for every record procpipe publishes.

Field names are snake_case and stable. A breaking change bumps ``SCHEMA_VERSION`` and is written
in CHANGELOG.md. JSON Schema files beside this module are generated from these models
(``python -m schemas`` rewrites them; a test fails when they are stale).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "1.0"

#: Canonical code systems and the pattern a code must match in each.
#: ASCII digits only and anchored with \Z (``$`` would let a trailing newline through): codes name
#: files (``json/<system>/<code>.json``), so the schema is their last line of defence.
CODE_PATTERNS: dict[str, re.Pattern[str]] = {
    "cpt": re.compile(r"^(?:\d{5}|\d{4}[FTU])\Z", re.ASCII),
    "hcpcs": re.compile(r"^[A-V]\d{4}\Z", re.ASCII),
    "icd10pcs": re.compile(r"^[0-9A-HJ-NP-Z]{7}\Z", re.ASCII),
    "cdt": re.compile(r"^D\d{4}\Z", re.ASCII),
}

#: Canonical section keys whose convenience field is a single text (all others are lists).
TEXT_SECTION_KEYS = ("summary", "purpose", "anesthesia", "duration", "setting", "patient_experience")
#: Canonical section keys whose convenience field is a list of strings (one per item or paragraph).
LIST_SECTION_KEYS = (
    "indications",
    "contraindications",
    "preparation",
    "procedure_description",
    "equipment",
    "personnel",
    "risks",
    "benefits",
    "recovery",
    "alternatives",
)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Item(Model):
    """One list item; ``label`` holds a leading "Label:" (without the colon)."""

    label: str | None = None
    text: str
    items: list[Item] = Field(default_factory=list)


class Subsection(Model):
    """A sub-heading inside a section ("Pre-procedure Instructions:") and what follows it."""

    heading: str
    text: str | None = None
    items: list[Item] = Field(default_factory=list)


class Section(Model):
    """One top-level section of the page, in page order.

    ``key`` is the canonical key from the vocabulary, or ``other`` for a heading outside it
    (then ``heading`` keeps the heading as written). ``text`` holds its paragraphs joined by a
    blank line; ``items`` its list items (nested).
    """

    key: str
    heading: str
    text: str | None = None
    items: list[Item] = Field(default_factory=list)
    subsections: list[Subsection] = Field(default_factory=list)


class SimilarCode(Model):
    code_system: str | None = None
    code: str
    title: str | None = None
    url: str | None = None


class Source(Model):
    """Provenance: where the page came from and the hash of its bytes."""

    url: str | None = None
    path: str | None = None
    sha256: str
    fetched_at: datetime | None = None
    content_type: str | None = None


class ProcedureRecord(Model):
    """One procedure code page, normalized."""

    record_id: str
    code_system: str
    code: str
    title: str | None = None
    procedure_name: str | None = None
    common_names: list[str] = Field(default_factory=list)
    technical_term: str | None = None
    preamble: list[str] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)

    # convenience fields, one per canonical key (derived from `sections`)
    summary: str | None = None
    purpose: str | None = None
    indications: list[str] = Field(default_factory=list)
    contraindications: list[str] = Field(default_factory=list)
    preparation: list[str] = Field(default_factory=list)
    procedure_description: list[str] = Field(default_factory=list)
    equipment: list[str] = Field(default_factory=list)
    anesthesia: str | None = None
    duration: str | None = None
    setting: str | None = None
    personnel: list[str] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)
    benefits: list[str] = Field(default_factory=list)
    recovery: list[str] = Field(default_factory=list)
    alternatives: list[str] = Field(default_factory=list)
    patient_experience: str | None = None
    similar_codes: list[SimilarCode] = Field(default_factory=list)

    # typed fields: null when the page does not say
    duration_minutes_min: int | None = None
    duration_minutes_max: int | None = None
    hospital_stay_days_min: int | None = None
    hospital_stay_days_max: int | None = None
    recovery_weeks_min: int | None = None
    recovery_weeks_max: int | None = None
    fasting_hours_min: int | None = None
    fasting_hours_max: int | None = None
    anesthesia_types: list[str] = Field(default_factory=list)
    care_settings: list[str] = Field(default_factory=list)

    source: Source
    parser_version: str
    schema_version: str = SCHEMA_VERSION

    @model_validator(mode="after")
    def _check_code(self) -> ProcedureRecord:
        pattern = CODE_PATTERNS.get(self.code_system)
        if pattern is None:
            raise ValueError(f"unknown code system {self.code_system!r}")
        if not pattern.match(self.code):
            raise ValueError(f"code {self.code!r} is not a valid {self.code_system} code")
        if self.record_id != f"{self.code_system}:{self.code}":
            raise ValueError("record_id must be '<code_system>:<code>'")
        for lo, hi in (
            ("duration_minutes_min", "duration_minutes_max"),
            ("hospital_stay_days_min", "hospital_stay_days_max"),
            ("recovery_weeks_min", "recovery_weeks_max"),
            ("fasting_hours_min", "fasting_hours_max"),
        ):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b})")
        return self


Stage = Literal["read", "decode", "parse", "normalize", "validate", "publish"]


class Reject(Model):
    """An input that did not become a record: where it came from, which stage refused it, and why."""

    source: str
    stage: Stage
    reason: str
    detail: str | None = None
    url: str | None = None
    sha256: str | None = None


class FileEntry(Model):
    sha256: str
    rows: int | None = None
    bytes: int


class Counts(Model):
    inputs: int
    records: int
    rejects: int
    duplicates: int

    @model_validator(mode="after")
    def _adds_up(self) -> Counts:
        if self.inputs != self.records + self.rejects + self.duplicates:
            raise ValueError("inputs must equal records + rejects + duplicates")
        return self


class Manifest(Model):
    schema_version: str = SCHEMA_VERSION
    parser_version: str
    run_id: str
    created_at: datetime
    counts: Counts
    files: dict[str, FileEntry] = Field(default_factory=dict)
    # refresh bookkeeping (optional: manifests written before these fields still read)
    #: the version this one was compared with (change report, gates)
    previous_run_id: str | None = None
    #: hash of what besides a page's bytes decides its result (parser code, vocabulary, limits)
    reuse_key: str | None = None
    #: inputs whose result was taken from the previous version instead of being parsed again
    reused: int | None = None
    #: record counts against ``previous_run_id``: added, removed, changed, unchanged
    changes: dict[str, int] | None = None
    #: what the quality gates judged: inputs, records, rejects, reject_rate, coverage by section
    quality: dict[str, Any] | None = None
    #: one result per quality gate: gate, passed, value, limit, message (skipped: why not judged)
    gates: list[dict[str, Any]] | None = None
    #: published with --force although a gate failed
    forced: bool = False
