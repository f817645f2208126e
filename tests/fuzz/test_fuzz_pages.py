"""Property tests: any page, however mangled, becomes a sound record or a one-line reject.

The generators (``page_strategies``) render real-looking pages in every markup style and mutate
them; see that module. The suite runs a modest budget (``PROCPIPE_FUZZ_EXAMPLES``, default 200
per property); ``python tests/fuzz/fuzz_parse.py --examples 100000`` runs the same properties long.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from page_strategies import SENTINEL, TARGETS, Case, check_front_end, check_page, render_html

from pipeline.errors import RejectedPage

EXAMPLES = int(os.environ.get("PROCPIPE_FUZZ_EXAMPLES", "200"))
_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@_SETTINGS
@given(TARGETS["rendered"][0])
def test_rendered_pages_in_every_style_keep_scripts_and_styles_out_of_records(case: Case) -> None:
    check_page(case)


@_SETTINGS
@given(TARGETS["hostile"][0])
def test_mutated_reencoded_and_noise_pages_never_crash_parse_page(case: Case) -> None:
    check_page(case)


@_SETTINGS
@given(TARGETS["meta"][0])
def test_hostile_sidecar_fields_never_crash_parse_page(case: Case) -> None:
    check_page(case)


@_SETTINGS
@given(TARGETS["front_ends"][0])
def test_front_ends_return_a_document_for_any_text(case: Case) -> None:
    check_front_end(case)


def test_the_invariants_catch_a_leaked_script() -> None:
    """The sentinel check can fail: a page whose script text is visible (escaped) is caught."""
    from page_strategies import PageModel, SectionModel

    sections = [SectionModel("Summary", [], [], False)]
    page = PageModel("cpt", "63185", "CPT4 code", "Spine decompression", sections)
    leaked = render_html(page, "h2", scripts=[f"<p>{SENTINEL}</p>"]).encode()
    with pytest.raises(AssertionError, match="script or style text"):
        check_page(Case(leaked, "site/cpt/63185.html", {}, "html"))
    with pytest.raises(AssertionError, match="script or style text"):
        check_front_end(Case(leaked.decode(), None, {}, "html"))


def test_the_invariants_reject_an_internal_error_reason() -> None:
    def broken(case: Case) -> None:
        raise RejectedPage("internal error: KeyError: 'x'", stage="parse")

    from page_strategies import check_outcome

    with pytest.raises(AssertionError, match="a bug surfaced"):
        check_outcome(Case(b"x", None, {}, "text"), broken)
