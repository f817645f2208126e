"""The command line as a user runs it (subprocesses): exit codes 0/1/2, one-line errors, JSON out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GALLBLADDER_TXT, SAMPLE_COUNTS, SAMPLE_RECORD_IDS

PROCPIPE = Path(sys.executable).with_name("procpipe")


def procpipe(
    *args: str | Path, cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS`` (the console script is checked once on its own)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "100"},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_console_script_and_module_are_the_same_program() -> None:
    script = subprocess.run([PROCPIPE, "--version"], capture_output=True, text=True, timeout=60)
    module = procpipe("--version")
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout and script.stdout.startswith("procpipe ")


@pytest.mark.parametrize(
    "args",
    [(), ("frobnicate",), ("process", "--workers", "0"), ("process", "--batch-size", "many"), ("parse",)],
    ids=["no-command", "unknown-command", "zero-workers", "non-numeric-batch", "parse-without-file"],
)
def test_bad_arguments_exit_2(args: tuple[str, ...]) -> None:
    proc = procpipe(*args)
    assert proc.returncode == 2
    assert "usage: procpipe" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_inputs_are_usage_errors(tmp_path: Path) -> None:
    assert_one_line_error(procpipe("process", "--raw-dir", tmp_path / "nope", "--out-dir", tmp_path / "o"), 2)
    assert_one_line_error(procpipe("parse", tmp_path / "nope.txt"), 2)
    assert_one_line_error(procpipe("run", cwd=tmp_path), 2)  # no raw/ here


def test_parse_prints_one_record_as_json(sample_raw: Path) -> None:
    proc = procpipe("parse", sample_raw / "site/cpt/47562.txt")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["record_id"] == "cpt:47562"
    assert record["title"] == "Laparoscopic gallbladder removal"
    assert [s["key"] for s in record["sections"]][:3] == ["name", "summary", "indications"]
    assert len(record["indications"]) == 3


def test_parse_takes_code_from_url_and_sidecar(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text(GALLBLADDER_TXT.replace("CPT4 code\n", ""), encoding="utf-8")
    proc = procpipe("parse", page, "--url", "https://example.org/code/cpt4/47563-some-slug", "--compact")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["record_id"] == "cpt:47563"
    assert len(proc.stdout.strip().splitlines()) == 1
    (tmp_path / "page.meta.json").write_text(
        json.dumps({"code_system": "cpt", "code": "47564"}), encoding="utf-8"
    )
    assert json.loads(procpipe("parse", page).stdout)["record_id"] == "cpt:47564"


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        ("bad/empty.txt", "empty"),
        ("bad/sprain.txt", "not a procedure page"),
        ("bad/cpt/99213.txt", "broken sidecar"),
    ],
)
def test_parse_reject_prints_the_reason_and_exits_1(sample_raw: Path, rel: str, reason: str) -> None:
    proc = procpipe("parse", sample_raw / rel)
    assert_one_line_error(proc, 1)
    assert proc.stdout == ""
    assert reason in proc.stderr


def test_show_renders_a_published_record(published: Path) -> None:
    proc = procpipe("show", "47562", "--out-dir", published)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("Laparoscopic gallbladder removal", "CPT 47562", "Indications", "• Bile leak", "Source"):
        assert text in out
    assert out.index("Summary") < out.index("Indications") < out.index("Risks and Complications")


def test_show_json_and_record_ids(published: Path) -> None:
    proc = procpipe("show", "hcpcs:e0114", "--out-dir", published, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["record_id"] == "hcpcs:E0114"


def test_show_unknown_code_or_nothing_published_exits_1(published: Path, tmp_path: Path) -> None:
    assert_one_line_error(procpipe("show", "00000", "--out-dir", published), 1)
    proc = procpipe("show", "47562", "--out-dir", tmp_path)
    assert_one_line_error(proc, 1)
    assert "nothing published" in proc.stderr


def test_process_without_prefect_prints_a_summary(sample_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = procpipe("process", "--raw-dir", sample_raw, "--out-dir", out, "--no-prefect")
    assert proc.returncode == 0, proc.stderr
    assert f"{SAMPLE_COUNTS['inputs']} pages from" in proc.stdout
    assert "broken sidecar" in proc.stdout and "bad/empty.txt" in proc.stdout
    lines = (out / "latest" / "procedures.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["record_id"] for line in lines} == SAMPLE_RECORD_IDS


def test_process_failure_is_one_line_and_exit_1(sample_raw: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    proc = procpipe("process", "--raw-dir", sample_raw, "--out-dir", blocker / "out")
    assert_one_line_error(proc, 1)


def test_run_uses_the_prefect_flow_with_no_server_configured(sample_raw: Path) -> None:
    """``procpipe run`` from a project folder: a temporary Prefect server, no tracebacks or warnings."""
    project = sample_raw.parent
    proc = procpipe("run", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "pages from raw -> processed/versions/" in proc.stdout
    assert (
        "Flow run" in proc.stderr and "parse: 4 records, 3 rejects" in proc.stderr
    )  # before the duplicate is folded
    for noise in ("Traceback", "Warning", "WARNING", "ERROR", "Stopping temporary server"):
        assert noise not in proc.stderr
    manifest = json.loads((project / "processed" / "latest" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"] == SAMPLE_COUNTS


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_long_runs_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import PROGRESS_MIN_PAGES, _progress_bar

    big = PROGRESS_MIN_PAGES + 1
    for stderr, total in ((io.StringIO(), big), (_Terminal(), PROGRESS_MIN_PAGES)):
        monkeypatch.setattr(sys, "stderr", stderr)
        with _progress_bar() as bar:
            bar(0, total)
            assert bar.progress is None
            bar(total, total)
        assert stderr.getvalue() == ""  # not a terminal, or too few pages: plain logs only
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _progress_bar() as bar:
        bar(0, big)
        assert bar.progress is not None
        bar(200, big)
    assert bar.progress is None  # taken down when the block ends, finished or not
    assert f"200/{big}" in terminal.getvalue() and "parse" in terminal.getvalue()


def test_process_flow_reports_parse_progress_per_batch(
    prefect_harness: None, sample_raw: Path, tmp_path: Path
) -> None:
    from pipeline import flows

    seen: list[tuple[int, int]] = []
    with flows.parse_progress(lambda done, total: seen.append((done, total))):
        manifest = flows.process(str(sample_raw), str(tmp_path / "out"), batch_size=3, workers=1)
    n = SAMPLE_COUNTS["inputs"]
    assert manifest.counts.inputs == n
    assert seen == [(0, n), *((min(done, n), n) for done in range(3, n + 3, 3))]
    seen.clear()
    flows.process(str(sample_raw), str(tmp_path / "out2"), batch_size=3, workers=1)
    assert seen == []  # outside the block nothing is reported


def test_html_engine_option_reaches_the_parser(
    sample_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--html-engine lxml`` parses without BeautifulSoup (made to fail here) and yields the same records."""
    import pipeline.parse.html as html_mod
    from pipeline.cli import HTML_ENGINES, main

    assert HTML_ENGINES == html_mod.ENGINES
    monkeypatch.delenv("PROCPIPE_HTML_ENGINE", raising=False)
    base = ["process", "--raw-dir", str(sample_raw), "--no-prefect", "--workers", "1"]
    assert main([*base, "--out-dir", str(tmp_path / "bs4")]) == 0

    def no_soup(text: str) -> None:
        raise AssertionError("BeautifulSoup engine used")

    monkeypatch.setattr(html_mod, "_via_bs4", no_soup)
    monkeypatch.setenv("PROCPIPE_HTML_ENGINE", "bs4")  # restored after the test; the option overrides it
    assert main([*base, "--out-dir", str(tmp_path / "lxml"), "--html-engine", "lxml"]) == 0

    def records(out: Path) -> list[dict[str, object]]:
        rows = [json.loads(x) for x in (out / "latest" / "procedures.jsonl").read_text().splitlines()]
        for r in rows:
            r.pop("run_id", None), r.pop("processed_at", None)
            r["source"].pop("fetched_at", None)
        return rows

    assert records(tmp_path / "lxml") == records(tmp_path / "bs4")
    assert SAMPLE_COUNTS["records"] == len(records(tmp_path / "lxml"))
    proc = procpipe("process", "--html-engine", "regex")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_bad_limit_in_the_environment_is_one_usage_error_before_any_flow(
    sample_raw: Path, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "process",
            "--raw-dir",
            str(sample_raw),
            "--out-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PROCPIPE_MAX_PAGE_BYTES": "lots"},
    )
    assert_one_line_error(proc, 2)
    assert "PROCPIPE_MAX_PAGE_BYTES" in proc.stderr and "Flow run" not in proc.stderr + proc.stdout
    assert not (tmp_path / "o").exists()
