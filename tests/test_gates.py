"""Quality gates: limits from a config file with defaults; a tripped gate publishes nothing, leaves
``latest`` alone and says which gate with its numbers; ``--force`` publishes and records it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_COUNTS
from test_incremental import code_of, make_raw, page

from pipeline.errors import UsageError
from pipeline.incremental import run
from pipeline.publish import latest_version
from pipeline.publish.gates import DEFAULT_FILE, GateConfig, GateFailed, load_config
from pipeline.publish.versions import list_versions, verify


def procpipe(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pipeline", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_nothing_published(out: Path, before: list[str]) -> None:
    assert [v.run_id for v in list_versions(out)] == before
    assert latest_version(out) == (out / "versions" / before[-1]).resolve()
    assert not [p.name for p in (out / "versions").iterdir() if p.name.startswith(".")]
    assert verify(out / "latest") == []


def test_defaults_come_from_the_bundled_file_and_files_override_them(tmp_path: Path) -> None:
    assert DEFAULT_FILE.is_file()
    assert load_config() == GateConfig()  # the file and the code agree
    d = GateConfig()
    assert (d.max_reject_rate_percent, d.max_record_drop_percent, d.max_coverage_drop_points) == (25, 10, 10)
    own = tmp_path / "gates.toml"
    own.write_text("[gates]\nmax_reject_rate_percent = 5\n", encoding="utf-8")
    assert load_config(own) == GateConfig(max_reject_rate_percent=5)
    (tmp_path / "procpipe.toml").write_text("[gates]\nenabled = false\nmin_size = 3\n", encoding="utf-8")
    assert load_config(cwd=tmp_path) == GateConfig(enabled=False, min_size=3)
    (tmp_path / "procpipe.toml").write_text("[other]\nx = 1\n", encoding="utf-8")
    assert load_config(cwd=tmp_path) == GateConfig()  # no [gates] table: defaults
    for bad in ("[gates]\nmax_reject_rate = 5\n", "[gates]\nmin_size = 'many'\n", "[gates\n"):
        own.write_text(bad, encoding="utf-8")
        with pytest.raises(UsageError, match="gates"):
            load_config(own)


def test_reject_rate_gate_trips_and_force_publishes(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 20, bad=2), tmp_path / "out"
    first = run(raw, out, workers=1)
    for i in range(2, 8):
        (raw / "bad" / f"empty{i}.txt").write_text("", encoding="utf-8")
    with pytest.raises(GateFailed) as caught:
        run(raw, out, workers=1)
    msg = str(caught.value)
    assert "reject_rate" in msg and "28.6% (8 of 28 inputs)" in msg and "limit of 25%" in msg
    assert f"latest stays {first.run_id}" in msg and "--force" in msg
    assert_nothing_published(out, [first.run_id])

    forced = run(raw, out, workers=1, force=True)
    assert forced.forced is True
    assert [g["gate"] for g in forced.gates or [] if not g["passed"]] == ["reject_rate"]
    assert latest_version(out) == (out / "versions" / forced.run_id).resolve()


def test_record_drop_and_coverage_gates(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 30), tmp_path / "out"
    first = run(raw, out, workers=1)
    for i in range(4):  # 30 -> 26 records: a 13.3% drop
        (raw / "site" / "cpt" / f"{code_of(i)}.md").unlink()
    with pytest.raises(GateFailed, match=r"record_drop: records fell 13\.3% \(30 -> 26\)") as caught:
        run(raw, out, workers=1)
    assert "limit of 10%" in str(caught.value)
    assert_nothing_published(out, [first.run_id])
    assert run(raw, out, workers=1, gates=GateConfig(max_record_drop_percent=20)).forced is False

    # risks vanish from 10 of 26 pages: coverage 100% -> 61.5%
    for i in range(4, 14):
        (raw / "site" / "cpt" / f"{code_of(i)}.md").write_text(page(code_of(i), i, risks=False), "utf-8")
    with pytest.raises(GateFailed) as caught:
        run(raw, out, workers=1)
    msg = str(caught.value)
    assert "coverage_drop" in msg and "risks 100.0% -> 61.5% (38.5 points)" in msg
    loose = GateConfig(max_coverage_drop_points=40)
    assert run(raw, out, workers=1, gates=loose).changes == {"added": 0, "removed": 0, "changed": 10,
                                                              "unchanged": 16}  # fmt: skip


def test_first_version_and_tiny_runs_skip_what_they_cannot_judge(tmp_path: Path) -> None:
    raw, out = make_raw(tmp_path / "raw", 2, bad=3), tmp_path / "out"  # 60% rejected, but 5 inputs
    m = run(raw, out, workers=1)
    by_gate = {g["gate"]: g for g in m.gates or []}
    assert all(g["passed"] for g in by_gate.values()) and not m.forced
    assert by_gate["reject_rate"]["skipped"] == "fewer than 20 inputs"
    assert by_gate["record_drop"]["skipped"] == "no previous version"
    strict = GateConfig(min_size=1)
    with pytest.raises(GateFailed, match="reject rate 60.0%"):
        run(raw, out, workers=1, gates=strict)
    assert run(raw, out, workers=1, gates=GateConfig(min_size=1, enabled=False)).forced is False


def test_the_bundled_sample_passes_the_default_gates(tmp_path: Path, repo_root: Path) -> None:
    m = run(repo_root / "raw", tmp_path / "out", workers=1)
    gate = {g["gate"]: g for g in m.gates or []}["reject_rate"]
    assert gate["passed"] and "skipped" not in gate and not m.forced  # judged (enough inputs), and passed
    assert m.quality is not None and 0 < m.quality["reject_rate"] <= 0.25


def test_cli_gate_failure_exits_1_and_force_publishes(sample_raw: Path, tmp_path: Path) -> None:
    out, gates = tmp_path / "out", tmp_path / "strict.toml"
    gates.write_text("[gates]\nmax_reject_rate_percent = 10\nmin_size = 1\n", encoding="utf-8")
    proc = procpipe("process", "--no-prefect", "--raw-dir", sample_raw, "--out-dir", out, "--gates", gates)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "quality gate failed, nothing published" in proc.stderr
    assert "reject rate 42.9% (3 of 7 inputs)" in proc.stderr
    assert not (out / "latest").exists()
    proc = procpipe(
        "process", "--no-prefect", "--raw-dir", sample_raw, "--out-dir", out, "--gates", gates, "--force"
    )
    assert proc.returncode == 0, proc.stderr
    assert "gates FAILED (reject_rate), published with --force" in proc.stdout
    assert (out / "latest" / "manifest.json").is_file()
    assert procpipe("process", "--no-prefect", "--raw-dir", sample_raw, "--out-dir", out, "--gates",
                    tmp_path / "missing.toml").returncode == 2  # fmt: skip
    assert SAMPLE_COUNTS["inputs"] == 7


def test_tripped_gate_fails_the_flow_and_leaves_latest(prefect_harness: None, tmp_path: Path) -> None:
    from pipeline.flows import process

    raw, out = make_raw(tmp_path / "raw", 2, bad=3), tmp_path / "out"
    gates = tmp_path / "gates.toml"
    gates.write_text("[gates]\nmin_size = 1\nmax_reject_rate_percent = 50\n", encoding="utf-8")
    shutil.rmtree(raw / "bad")
    first = process(str(raw), str(out), workers=1, gates=str(gates))
    make_raw(raw, 2, bad=3)
    state = process(str(raw), str(out), workers=1, gates=str(gates), return_state=True)
    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, GateFailed) and "reject rate 60.0% (3 of 5 inputs)" in str(exc)
    assert_nothing_published(out, [first.run_id])
