"""Per-page limits: size, HTML elements, list items, list depth and the parse time budget.

Deep and huge documents (50,000 nested divs, 100,000 list items, a 10 MB single line) parse cleanly
or become rejects with a reason; no recursion can overflow; a page over the time budget is a
"too slow to parse" reject and the run goes on. Limits come from ``Limits`` or the environment.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

import pipeline.api as api
from pipeline.api import parse_page
from pipeline.errors import RejectedPage, UsageError
from pipeline.limits import (
    ENV_VARS,
    Limits,
    ParseTimeout,
    check_deadline,
    check_document,
    current_limits,
    time_budget,
)
from pipeline.parse.document import Document, Heading, ListBlock
from pipeline.parse.document import Item as DocItem
from pipeline.process import process_batch
from schemas import ProcedureRecord
from schemas.models import Item

HEAD = "<h1>63185 - Spinal decompression</h1><p>CPT4 code</p><h2>Summary</h2><p>Bone is removed.</p>"
RISKS = "<h2>Risks and Complications</h2>"
TXT_HEAD = (
    "63185 - Spinal decompression\n\nCPT4 code\n\nSummary\n\nBone is removed.\n\nRisks and Complications\n\n"
)


def outcome(content: bytes | str, path: str, limits: Limits | None = None) -> ProcedureRecord | RejectedPage:
    try:
        return parse_page(content, path=path, limits=limits)
    except RejectedPage as exc:
        assert exc.reason and "\n" not in exc.reason and not exc.reason.startswith("internal error")
        return exc


def reject(content: bytes | str, path: str, limits: Limits | None = None) -> RejectedPage:
    result = outcome(content, path, limits)
    assert isinstance(result, RejectedPage), "expected a reject"
    return result


# -- configuration ---------------------------------------------------------------------------------


def test_defaults_match_the_issue() -> None:
    lim = Limits()
    assert lim.max_page_bytes == 5 * 1024 * 1024
    assert (lim.max_list_items, lim.max_depth, lim.max_elements) == (10_000, 32, 100_000)
    assert lim.max_parse_seconds == 10.0


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    assert current_limits() == Limits()
    monkeypatch.setenv("PROCPIPE_MAX_PAGE_BYTES", "1_000")
    monkeypatch.setenv("PROCPIPE_MAX_LIST_ITEMS", "5")
    monkeypatch.setenv("PROCPIPE_MAX_DEPTH", "3")
    monkeypatch.setenv("PROCPIPE_MAX_ELEMENTS", "70")
    monkeypatch.setenv("PROCPIPE_MAX_PARSE_SECONDS", "2.5")
    assert current_limits() == Limits(1000, 70, 5, 3, 2.5)
    exc = reject("x" * 1001, "site/cpt/63185.txt")
    assert (exc.stage, exc.reason) == ("read", "page too large (1001 bytes > 1000)")


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("PROCPIPE_MAX_DEPTH", "deep", "PROCPIPE_MAX_DEPTH must be a whole number, got 'deep'"),
        ("PROCPIPE_MAX_PARSE_SECONDS", "soon", "PROCPIPE_MAX_PARSE_SECONDS must be a number of seconds"),
        ("PROCPIPE_MAX_LIST_ITEMS", "0", "limit max_list_items must be positive, got 0 (from the env"),
        ("PROCPIPE_MAX_PARSE_SECONDS", "-1", "limit max_parse_seconds must be positive"),
    ],
)
def test_bad_limit_settings_are_usage_errors_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        current_limits()


def test_a_zero_time_budget_turns_the_budget_off() -> None:
    assert Limits(max_parse_seconds=0).max_parse_seconds == 0
    with time_budget(0) as mode:
        assert mode == "off"


# -- size --------------------------------------------------------------------------------------------


def test_a_page_over_the_size_limit_is_rejected_before_decoding() -> None:
    size = 5 * 1024 * 1024 + 1
    exc = reject(b"\xff" * size, "site/cpt/63185.html")
    assert (exc.stage, exc.reason) == ("read", f"page too large ({size} bytes > 5242880)")


@pytest.mark.parametrize("path", ["site/cpt/63185.txt", "site/cpt/63185.html", "site/cpt/63185.md"])
def test_a_10_mb_single_line_is_a_size_reject_by_default(path: str) -> None:
    line = ("word " * 2_000_000).encode()
    assert b"\n" not in line and len(line) == 10_000_000
    exc = reject(line, path)
    assert exc.reason == "page too large (10000000 bytes > 5242880)"


def test_a_10_mb_single_line_under_a_raised_size_limit_parses_or_runs_out_of_time() -> None:
    line = TXT_HEAD.replace("\n", " ") + "word " * 2_000_000
    result = outcome(line, "site/cpt/63185.txt", Limits(max_page_bytes=20_000_000, max_parse_seconds=1))
    if isinstance(result, RejectedPage):
        assert result.reason == "too slow to parse (over 1 s)"
    else:
        assert result.record_id == "cpt:63185"


# -- structure -------------------------------------------------------------------------------------


def test_50000_nested_divs_parse_cleanly() -> None:
    page = f"<html><body>{HEAD}" + "<div>" * 50_000 + "deep text" + "</div>" * 50_000
    page += f"{RISKS}<ul><li>Bleeding</li></ul></body></html>"
    result = outcome(page, "site/cpt/63185.html")
    assert isinstance(result, ProcedureRecord), result
    assert result.summary == "Bone is removed.\n\ndeep text"
    assert result.risks == ["Bleeding"]


def test_50000_nested_lists_are_a_depth_reject_not_a_recursion_error() -> None:
    page = f"<html><body>{HEAD}{RISKS}" + "<ul><li>level" * 50_000 + "</li></ul>" * 50_000
    exc = reject(page, "site/cpt/63185.html")
    assert exc.reason == "too many list items (50000 > 10000)"


def _depth(items: list[Item]) -> int:
    deepest, stack = 0, [(it, 1) for it in items]
    while stack:
        it, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((kid, d + 1) for kid in it.items)
    return deepest


@pytest.mark.parametrize("depth", [5, 40, 300])
def test_deeply_nested_html_lists_are_capped_or_refused_never_recursed(depth: int) -> None:
    page = f"<html><body>{HEAD}{RISKS}" + "<ul><li>level" * depth + "</li></ul>" * depth
    result = outcome(page, "site/cpt/63185.html")
    if isinstance(result, RejectedPage):
        assert result.reason == "lists nested too deeply (over 32 levels)"
    else:
        assert 1 <= _depth(result.sections[-1].items) <= 32
        assert "level" in result.risks


def _nested(depth: int) -> Document:
    top = item = DocItem("level")
    for _ in range(depth - 1):
        kid = DocItem("level")
        item.children.append(kid)
        item = kid
    return Document(title="t", blocks=[Heading("Risks and Complications", 2), ListBlock(False, [top])])


def test_a_document_nested_deeper_than_the_limit_is_refused() -> None:
    check_document(_nested(32), Limits())
    with pytest.raises(RejectedPage, match=r"^lists nested too deeply \(over 32 levels\)$"):
        check_document(_nested(33), Limits())
    check_document(_nested(33), Limits(max_depth=33))
    with pytest.raises(RejectedPage, match=r"^lists nested too deeply \(over 2 levels\)$"):
        check_document(_nested(50_000), Limits(max_depth=2, max_list_items=10**6))


def test_a_document_over_both_limits_gets_the_refusal_met_first_walking_from_the_last_list() -> None:
    """Lists are walked depth first from the last one: here the deep list breaks its limit before the
    items of all lists together break theirs (a level-by-level walk would say "too many items")."""
    flat = ListBlock(False, [DocItem("a"), DocItem("b"), DocItem("c")])
    doc = Document(title="t", blocks=[flat, *_nested(3).blocks])
    check_document(doc, Limits(max_list_items=6, max_depth=3))
    with pytest.raises(RejectedPage, match=r"^lists nested too deeply \(over 2 levels\)$"):
        check_document(doc, Limits(max_list_items=3, max_depth=2))
    with pytest.raises(RejectedPage, match=r"^too many list items \(over 5\)$"):
        check_document(doc, Limits(max_list_items=5, max_depth=3))


def test_deep_indentation_in_a_text_page_is_flattened_not_recursed() -> None:
    lines = "".join(" " * i + f"- level {i}\n" for i in range(3000))
    result = outcome(TXT_HEAD + lines, "site/cpt/63185.txt")
    assert isinstance(result, ProcedureRecord), result
    assert len(result.risks) == 3000
    assert _depth(result.sections[-1].items) <= 32


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("site/cpt/63185.html", f"<html><body>{HEAD}{RISKS}<ul>" + "<li>item</li>" * 100_000 + "</ul>"),
        ("site/cpt/63185.txt", TXT_HEAD + "  • item\n" * 100_000),
        ("site/cpt/63185.md", "# " + TXT_HEAD + "- item\n" * 100_000),
    ],
    ids=["html", "text", "markdown"],
)
def test_100000_list_items_are_a_reject_with_the_count(path: str, page: str) -> None:
    exc = reject(page, path)
    assert (exc.stage, exc.reason) == ("parse", "too many list items (100000 > 10000)")


def test_list_items_under_a_raised_limit_are_kept() -> None:
    page = TXT_HEAD + "  • item\n" * 12_000
    result = outcome(page, "site/cpt/63185.txt", Limits(max_list_items=20_000))
    assert isinstance(result, ProcedureRecord) and len(result.risks) == 12_000


def test_items_hidden_from_the_precount_are_caught_in_the_document() -> None:
    """Items that the cheap count cannot see (bullets split by <br>) are counted in the Document."""
    page = f"<html><body>{HEAD}{RISKS}<p>" + "• item<br>" * 300 + "</p></body></html>"
    exc = reject(page, "site/cpt/63185.html", Limits(max_list_items=100))
    assert exc.reason == "too many list items (over 100)"


def test_too_many_html_elements_are_refused_before_a_tree_is_built() -> None:
    page = f"<html><body>{HEAD}<p>" + "<span>x</span>" * 150_000 + "</p></body></html>"
    exc = reject(page, "site/cpt/63185.html")
    assert (exc.stage, exc.reason) == ("parse", "too many HTML elements (150007 > 100000)")


# -- the time budget -------------------------------------------------------------------------------


def _slow_forever(text: str, kind: str) -> Document:
    while True:  # never returns and never checks the deadline: only the alarm can stop it
        time.sleep(0.001)


def test_a_page_over_the_budget_is_a_too_slow_reject_in_the_main_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = signal.getsignal(signal.SIGALRM)
    monkeypatch.setattr(api, "parse_document", _slow_forever)
    exc = reject(HEAD, "site/cpt/63185.html", Limits(max_parse_seconds=0.2))
    assert (exc.stage, exc.reason) == ("parse", "too slow to parse (over 0.2 s)")
    assert signal.getsignal(signal.SIGALRM) is before  # handler restored
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left behind


def test_a_real_slow_page_is_stopped_by_the_alarm() -> None:
    page = "<html><body>" + HEAD + "<p>" + "a " * 2_000_000 + "</p></body></html>"  # seconds of work
    exc = reject(page, "site/cpt/63185.html", Limits(max_parse_seconds=0.05))
    assert exc.reason == "too slow to parse (over 0.05 s)"


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("site/cpt/63185.txt", TXT_HEAD + "A sentence of words on its own line.\n" * 120_000),
        ("site/cpt/63185.html", f"<html><body>{HEAD}" + "<p>A sentence of words.</p>" * 20_000),
    ],
    ids=["text", "html"],
)
def test_outside_the_main_thread_the_budget_is_cooperative(path: str, page: str) -> None:
    results: list[object] = []

    def work() -> None:
        with time_budget(5) as mode:
            results.append(mode)
        results.append(outcome(page, path, Limits(max_parse_seconds=0.05)))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert results[0] == "cooperative"
    assert isinstance(results[1], RejectedPage) and results[1].reason == "too slow to parse (over 0.05 s)"


def test_someone_elses_alarm_is_left_alone() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        with time_budget(1) as mode:
            assert mode == "cooperative"
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 30
        with pytest.raises(ParseTimeout):
            with time_budget(0.01):
                time.sleep(0.02)
                check_deadline()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == []


def test_the_run_goes_on_after_a_page_over_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    (raw / "cpt").mkdir(parents=True)
    slow = "<html><body>" + HEAD + "<p>" + "a " * 2_000_000
    (raw / "cpt" / "63185.html").write_text(slow, encoding="utf-8")
    (raw / "cpt" / "63190.html").write_text(f"<html><body>{HEAD.replace('63185', '63190')}", encoding="utf-8")
    monkeypatch.setenv("PROCPIPE_MAX_PARSE_SECONDS", "0.05")
    slow, good = process_batch(["cpt/63185.html", "cpt/63190.html"], str(raw))
    assert slow["reject"]["reason"] == "too slow to parse (over 0.05 s)"
    assert slow["reject"]["source"] == "cpt/63185.html"
    assert good["record"]["record_id"] == "cpt:63190"


def test_the_alarm_restores_a_handler_someone_installed_and_leaves_no_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fired: list[int] = []

    def theirs(signum: int, frame: object) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, theirs)
    try:
        with time_budget(5) as mode:
            assert mode == "alarm"
            assert signal.getsignal(signal.SIGALRM) is not theirs
        assert signal.getsignal(signal.SIGALRM) is theirs
        monkeypatch.setattr(api, "parse_document", _slow_forever)
        exc = reject(HEAD, "site/cpt/63185.html", Limits(max_parse_seconds=0.05))
        assert exc.reason == "too slow to parse (over 0.05 s)"
        assert signal.getsignal(signal.SIGALRM) is theirs
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        with pytest.raises(ValueError, match="inside"):  # an error in the block: same clean-up
            with time_budget(5):
                raise ValueError("inside")
        assert signal.getsignal(signal.SIGALRM) is theirs
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert fired == []


def test_the_environment_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    seen = []
    for value in ("7", "8", "7", None, "7"):
        if value is None:
            monkeypatch.delenv("PROCPIPE_MAX_DEPTH")
        else:
            monkeypatch.setenv("PROCPIPE_MAX_DEPTH", value)
        seen.append(current_limits().max_depth)
    assert seen == [7, 8, 7, 32, 7]
    monkeypatch.setenv("PROCPIPE_MAX_DEPTH", "seven")
    for _ in range(2):  # a bad value is refused every time, never remembered as good
        with pytest.raises(UsageError, match="PROCPIPE_MAX_DEPTH must be a whole number"):
            current_limits()
