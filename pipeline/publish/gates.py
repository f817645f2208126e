"""Quality gates: numbers a new version must meet before it may become ``latest``.

Three gates, limits in ``pipeline/gates.toml`` (defaults; see that file), a ``[gates]`` table of
``procpipe.toml`` in the working folder, or any file given with ``--gates FILE``:

- ``reject_rate``: the share of inputs rejected is at most ``max_reject_rate_percent``;
- ``record_drop``: the record count falls by at most ``max_record_drop_percent`` against the
  previous version;
- ``coverage_drop``: no section's coverage falls by more than ``max_coverage_drop_points``.

``measure`` reads the numbers of a written (not yet published) version folder; ``evaluate``
compares them with the limits and the previous version's numbers (kept in its manifest's
``quality``) and returns one result per gate. The writer refuses to publish when one fails
(``GateFailed``, naming the gate and its numbers) unless ``force`` is set; every result goes into
the manifest (``gates``) either way, and ``quality_markdown`` renders them for the flow's artifact.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.errors import ProcpipeError, UsageError
from schemas import Manifest

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "gates.toml"
PROJECT_FILE = "procpipe.toml"

Result = dict[str, Any]


@dataclass(frozen=True)
class GateConfig:
    """The limits; see ``pipeline/gates.toml`` for what each means."""

    enabled: bool = True
    max_reject_rate_percent: float = 25.0
    max_record_drop_percent: float = 10.0
    max_coverage_drop_points: float = 10.0
    min_size: int = 20


class GateFailed(ProcpipeError):
    """A quality gate tripped: nothing was published. ``results`` holds every gate's result."""

    def __init__(self, results: list[Result], latest: str | None) -> None:
        self.results = results
        failed = [r for r in results if not r["passed"]]
        stays = f"latest stays {latest}" if latest else "nothing was published before either"
        reasons = "; ".join(f"{r['gate']}: {r['message']}" for r in failed)
        super().__init__(
            f"quality gate failed, nothing published ({stays}): {reasons} (--force publishes anyway)"
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read gates file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"gates file {path} is not valid TOML: {exc}") from None
    table = data.get("gates", data)
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [gates] must be a table")
    return table


def config_from(table: dict[str, Any], where: str = "gates") -> GateConfig:
    """A ``GateConfig`` from a ``[gates]`` table; unknown keys and wrong types are usage errors."""
    known = {f.name: f for f in fields(GateConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise UsageError(f"{where}: unknown gate setting {key!r} (known: {', '.join(known)})")
        if key == "enabled":
            if not isinstance(value, bool):
                raise UsageError(f"{where}: enabled must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UsageError(f"{where}: {key} must be a number >= 0")
        values[key] = int(value) if key == "min_size" else value
    return GateConfig(**values)


def load_config(path: str | Path | None = None, *, cwd: Path | None = None) -> GateConfig:
    """The gates in force: ``path`` if given, else ``procpipe.toml``'s ``[gates]`` in ``cwd`` (the
    working folder) if it has one, over the defaults of ``pipeline/gates.toml``."""
    table = _read(DEFAULT_FILE) if DEFAULT_FILE.is_file() else {}
    where = str(path) if path else None
    if path is None:
        project = (cwd or Path.cwd()) / PROJECT_FILE
        if project.is_file():
            try:
                has_gates = "gates" in tomllib.loads(project.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
                has_gates = True  # let _read report what is wrong with it
            if has_gates:
                path, where = project, str(project)
    if path is not None:
        table = {**table, **_read(Path(path))}
    return config_from(table, where or str(DEFAULT_FILE))


def measure(
    folder: Path, inputs: int, records: int, rejects: int, *, having: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The numbers gates judge for a written version folder. ``having`` (records per section key,
    as the writer counted them) spares reading the sections table back."""
    from pipeline.load import coverage_of, section_coverage

    coverage = coverage_of(having, records) if having is not None else section_coverage(folder)
    return {
        "inputs": inputs,
        "records": records,
        "rejects": rejects,
        "reject_rate": rejects / inputs if inputs else 0.0,
        "coverage": {k: round(v, 6) for k, v in coverage.items()},
    }


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def evaluate(
    config: GateConfig,
    quality: dict[str, Any],
    previous: Manifest | None,
    previous_coverage: dict[str, float] | None = None,
) -> list[Result]:
    """One result per gate: ``gate``, ``passed``, ``value``, ``limit``, ``message`` (and ``skipped``
    with the reason when the gate did not apply)."""
    out: list[Result] = []
    n, rate = quality["inputs"], quality["reject_rate"]
    limit = config.max_reject_rate_percent / 100
    r: Result = {"gate": "reject_rate", "value": round(rate, 6), "limit": limit}
    if n < config.min_size:
        r.update(
            passed=True,
            skipped=f"fewer than {config.min_size} inputs",
            message=f"{_pct(rate)} of {n} inputs rejected (too few inputs to judge)",
        )
    else:
        r["passed"] = rate <= limit
        r["message"] = (
            f"reject rate {_pct(rate)} ({quality['rejects']} of {n} inputs) "
            + ("is within" if r["passed"] else "is above")
            + f" the limit of {config.max_reject_rate_percent:g}%"
        )
    out.append(r)

    before = previous.counts.records if previous else None
    now = quality["records"]
    limit = config.max_record_drop_percent / 100
    r = {"gate": "record_drop", "limit": limit}
    if previous is None or before is None:
        r.update(
            passed=True,
            value=None,
            skipped="no previous version",
            message="first version: nothing to compare",
        )
    elif before < config.min_size:
        drop = (before - now) / before if before else 0.0
        r.update(
            passed=True,
            value=round(drop, 6),
            skipped=f"previous version has fewer than {config.min_size} records",
            message=f"records {before} -> {now} (too few to judge)",
        )
    else:
        drop = (before - now) / before
        r["value"] = round(drop, 6)
        r["passed"] = drop <= limit
        verb = "fell" if drop > 0 else "changed"
        r["message"] = (
            f"records {verb} {_pct(max(drop, 0.0))} ({before} -> {now}) against {previous.run_id}, "
            + ("within" if r["passed"] else "more than")
            + f" the limit of {config.max_record_drop_percent:g}%"
        )
    out.append(r)

    limit = config.max_coverage_drop_points / 100
    r = {"gate": "coverage_drop", "limit": limit}
    if previous is None or previous_coverage is None:
        r.update(
            passed=True,
            value=None,
            skipped="no previous version",
            message="first version: nothing to compare",
        )
    elif (before or 0) < config.min_size or now < config.min_size:
        r.update(
            passed=True,
            value=None,
            skipped=f"fewer than {config.min_size} records",
            message="too few records to judge coverage",
        )
    else:
        cov = quality["coverage"]
        drops = sorted(
            ((previous_coverage[k] - cov.get(k, 0.0), k) for k in previous_coverage),
            reverse=True,
        )
        worst, key = drops[0] if drops else (0.0, None)
        r["value"] = round(max(worst, 0.0), 6)
        r["section"] = key
        r["passed"] = worst <= limit
        if r["passed"]:
            r["message"] = (
                f"largest coverage drop {max(worst, 0.0) * 100:.1f} points"
                + (f" ({key})" if key and worst > 0 else "")
                + f", within the limit of {config.max_coverage_drop_points:g} points"
            )
        else:
            tripped = [(d, k) for d, k in drops if d > limit]
            parts = [
                f"{k} {_pct(previous_coverage[k])} -> {_pct(cov.get(k, 0.0))} ({d * 100:.1f} points)"
                for d, k in tripped[:3]
            ]
            more = f" and {len(tripped) - 3} more" if len(tripped) > 3 else ""
            r["message"] = (
                f"section coverage fell more than {config.max_coverage_drop_points:g} points against "
                f"{previous.run_id}: " + ", ".join(parts) + more
            )
    out.append(r)
    if not config.enabled:
        for r in out:
            if not r["passed"]:
                r["passed"], r["skipped"] = True, "gates disabled"
    return out


def failed(results: list[Result]) -> list[Result]:
    return [r for r in results if not r["passed"]]


def quality_markdown(run_id: str | None, results: list[Result], *, published: bool = True) -> str:
    """The gates' results as Markdown (the flow's quality artifact)."""
    bad = failed(results)
    if not published:
        verdict = "**Failed: nothing was published.**"
    elif bad:
        verdict = "**Failed, published anyway (--force).**"
    else:
        verdict = "Passed."
    lines = [
        f"# Quality gates{f' of {run_id}' if run_id else ''}",
        "",
        verdict,
        "",
        "| gate | result | value | limit | detail |",
        "|---|---|---:|---:|---|",
    ]
    for r in results:
        state = "FAILED" if not r["passed"] else ("skipped" if r.get("skipped") else "passed")
        value = "" if r.get("value") is None else _pct(r["value"])
        lines.append(f"| {r['gate']} | {state} | {value} | {_pct(r['limit'])} | {r['message']} |")
    return "\n".join(lines) + "\n"
