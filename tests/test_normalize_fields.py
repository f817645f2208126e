"""Typed fields, table-driven: what a page says -> numbers and categories (null when it does not say)."""

from __future__ import annotations

import random
import re

import pytest

from pipeline.normalize import fields
from pipeline.normalize.fields import (
    anesthesia_types,
    care_settings,
    duration_minutes,
    extract_fields,
    fasting_hours,
    find_spans,
    hospital_stay_days,
    recovery_weeks,
    sentences,
)
from schemas.models import Item, Section, Subsection


def sec(key: str, text: str | None = None, *items: str, label: str | None = None) -> Section:
    return Section(key=key, heading=key.title(), text=text, items=[Item(text=i, label=label) for i in items])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Approximately 2 to 4 hours, depending on the levels treated.", (120, 240)),
        ("The visit takes 30-60 minutes.", (30, 60)),
        ("It usually takes 20–30 minutes.", (20, 30)),
        ("Less than 5 minutes.", (None, 5)),
        ("Up to 2 hours.", (None, 120)),
        ("At least 45 minutes.", (45, None)),
        ("About 45 minutes.", (45, 45)),
        ("Each session lasts 50 minutes.", (50, 50)),
        ("One to two hours.", (60, 120)),
        ("Roughly half an hour.", (30, 30)),
        ("An hour and a half.", (90, 90)),
        ("About 1.5 hours.", (90, 90)),
        ("1 hour and 30 minutes in total.", (90, 90)),
        ("Between 20 and 29 minutes of face-to-face time.", (20, 29)),
        ("45 minutes to 1 hour.", (45, 60)),
        ("A few minutes.", (2, 5)),
        ("Twenty-five minutes.", (25, 25)),
        ("It depends on the patient.", (None, None)),
    ],
)
def test_duration_minutes(text: str, expected: tuple[int | None, int | None]) -> None:
    assert duration_minutes([sec("duration", text)]) == expected


def test_duration_from_a_labelled_item_and_only_from_the_duration_section() -> None:
    assert duration_minutes([sec("duration", None, "Less than 10 minutes.", label="Typical Duration")]) == (
        None,
        10,
    )
    assert duration_minutes([sec("summary", "A session lasts 30 minutes.")]) == (None, None)
    labelled = sec("procedure_description", None, "About 15 minutes.", label="Duration")
    assert duration_minutes([labelled]) == (15, 15)


@pytest.mark.parametrize(
    ("sections", "care", "expected"),
    [
        ([sec("recovery", None, "Initial hospital stay of 1 to 2 days.")], ["hospital"], (1, 2)),
        ([sec("recovery", "Patients stay in the hospital for three to five days.")], [], (3, 5)),
        ([sec("recovery", "Most are discharged within 24 hours.")], [], (None, 1)),
        ([sec("recovery", "An overnight stay in hospital is usual.")], [], (1, 1)),
        ([sec("recovery", "You go home the same day.")], [], (0, 0)),
        ([sec("setting", "Done as an outpatient procedure.")], ["outpatient"], (0, 0)),
        ([sec("setting", "An outpatient clinic or a doctor's office.")], ["outpatient", "clinic"], (0, 0)),
        (
            [sec("setting", "In a hospital or an outpatient clinic.")],
            ["hospital", "outpatient", "clinic"],
            (None, None),
        ),
        ([sec("summary", "A knee operation.")], [], (None, None)),
    ],
)
def test_hospital_stay_days(
    sections: list[Section], care: list[str], expected: tuple[int | None, int | None]
) -> None:
    assert hospital_stay_days(sections, care) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Recovery period of 4 to 6 weeks, with no heavy lifting.", (4, 6)),
        ("Full recovery can take 3 to 6 months.", (13, 26)),
        ("Most people recover in a few days.", (0, 1)),
        ("You can return to work after two weeks.", (2, 2)),
        ("Most return to full activity within 2 to 3 weeks.", (2, 3)),
        ("Healing takes up to 2-3 months.", (None, 13)),
        ("Normal activities can be resumed immediately.", (0, 0)),
        ("A follow-up appointment after 2 weeks checks the healing.", (None, None)),
        ("Keep the dressing dry.", (None, None)),
    ],
)
def test_recovery_weeks(text: str, expected: tuple[int | None, int | None]) -> None:
    assert recovery_weeks([sec("recovery", None, text)]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fasting for at least 8 hours before the procedure.", (8, None)),
        ("You may be asked to fast for 8-12 hours.", (8, 12)),
        ("Do not eat or drink for six hours beforehand.", (6, 6)),
        ("Nothing to eat after midnight (NPO).", (None, None)),
        ("Fast from midnight before surgery.", (None, None)),
        ("Avoid eating for a few hours before the test.", (None, None)),
        ("No fasting is required.", (0, 0)),
        ("Fasting is usually not required.", (0, 0)),
        ("No special preparations like fasting are needed.", (0, 0)),
        ("Follow a special diet and fasting regimen 1-3 days before.", (None, None)),
        ("Avoid creams for 48 hours before the test.", (None, None)),
    ],
)
def test_fasting_hours(text: str, expected: tuple[int | None, int | None]) -> None:
    assert fasting_hours([sec("preparation", None, text)]) == expected


def test_fasting_from_a_labelled_preparation_subsection() -> None:
    s = Section(
        key="preparation",
        heading="Preparation",
        subsections=[
            Subsection(
                heading="Pre-procedure Instructions", items=[Item(text="Fast for 4 hours before the test.")]
            )
        ],
    )
    assert fasting_hours([s]) == (4, 4)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            [sec("procedure_description", None, "The patient is placed under general anesthesia.")],
            ["general"],
        ),
        (
            [sec("procedure_description", None, "General or regional anesthesia is given.")],
            ["general", "regional"],
        ),
        (
            [sec("procedure_description", None, "Usually local anesthesia with sedation.")],
            ["local", "sedation"],
        ),
        (
            [sec("procedure_description", None, "A local anesthetic may be applied to numb the area.")],
            ["local"],
        ),
        ([sec("anesthesia", "A spinal or epidural anesthetic is used.")], ["spinal", "epidural"]),
        ([sec("anesthesia", "Monitored anesthesia care (conscious sedation).")], ["sedation"]),
        ([sec("procedure_description", None, "A nerve block numbs the arm.")], ["regional"]),
        ([sec("procedure_description", None, "Numbing drops (topical anesthetic) are used.")], ["local"]),
        ([sec("procedure_description", None, "None required.", label="Anesthesia/Sedation")], ["none"]),
        ([sec("procedure_description", "Anesthesia or Sedation: Not applicable.")], ["none"]),
        ([sec("procedure_description", "The test does not require anesthesia or sedation.")], ["none"]),
        ([sec("procedure_description", "No anesthesia or sedation is necessary.")], ["none"]),
        ([sec("patient_experience", "You will be under anesthesia and should not feel pain.")], []),
        ([sec("summary", "Done under general anesthesia.")], []),
    ],
)
def test_anesthesia_types(sections: list[Section], expected: list[str]) -> None:
    assert anesthesia_types(sections) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Usually performed in a hospital or specialized surgical center.",
            ["hospital", "ambulatory_surgical_center"],
        ),
        ("An outpatient clinic or a doctor's office.", ["outpatient", "clinic"]),
        ("At home or wherever convenient.", ["home"]),
        ("An ambulatory surgery center (ASC).", ["ambulatory_surgical_center"]),
        ("Admitted as an inpatient to the hospital.", ["hospital", "inpatient"]),
        ("Wherever the team decides.", []),
    ],
)
def test_care_settings(text: str, expected: list[str]) -> None:
    assert care_settings([sec("setting", text)]) == expected


def test_care_setting_from_a_location_label_outside_the_setting_section() -> None:
    assert care_settings([sec("summary", None, "At home.", label="Location")]) == ["home"]


def test_a_page_that_says_nothing_gives_nulls() -> None:
    f = extract_fields([sec("summary", "A brace for the wrist.")])
    assert (
        f.duration_minutes_min,
        f.duration_minutes_max,
        f.hospital_stay_days_min,
        f.recovery_weeks_max,
        f.fasting_hours_min,
        f.anesthesia_types,
        f.care_settings,
    ) == (None, None, None, None, None, [], [])


def test_minimum_never_exceeds_maximum() -> None:
    spans = find_spans("from 6 to 2 hours")
    assert spans and (spans[0].lo, spans[0].hi) == (6, 2)
    assert duration_minutes([sec("duration", "from 6 to 2 hours")]) == (120, 360)


# Fragments for the differential test below: time amounts in words and digits, every keyword the cheap
# pre-checks look for, capitals, and the characters re.I folds onto ASCII letters (dotless/dotted i,
# long s, Kelvin sign), which must send a text down the full patterns.
_FRAGMENTS = [
    "about", "Up to", "between", "2", "4", "1.5", "-", "to", "or", "and", "minutes", "HOURS", "hrs", "days",
    "weeks", "months", "a year", "half an hour", "overnight", "one", "twenty-two", "a few", "several",
    "a couple of", "hoſpital stay", "ſeveral", "mınutes", "Hospital", "stay", "admitted", "discharged",
    "same-day", "outpatient procedure", "inpatient", "recover", "return to work", "follow-up",
    "immediately", "fasting", "NPO", "nothing by mouth", "do not eat", "no fasting", "empty stomach",
    "general anesthesia", "local", "sedation", "nerve block", "numbing cream", "no anesthesia",
    "twilight", "at home", "clinic", "ambulatory surgical center", "ASC", "\u212aelvin", "\u0130", ".",
    ";", ",", "\n", "nothing", "it takes", "(", ")", "ASC", "asc", "Surgical Center", "Office",
    "Regional/local anesthesia", "does not require sedation", "Same Day", "ſame day", "back to work",
    "ASCs", "recovery is immediate", "\n\n", "! ", "? ", "reſume work", "ſedation", "faſting", "hoſpitalized",
    "anesthesia", "not required", "none", "n/a", "unnecessary", "without", "don't", "typically", "No",
    "epidural", "topical", "spinal", "primary care", "home-based", "self-administered", "Day-case",
    "approximately", "no more than", "\t", "   ", "~", "approx.", "between  ", "3\u00a0", "٣",
    "stay of", "length of stay", "admission", "need to fast", "nil by mouth", "go home the same day",
    "without fasting", "such as fasting", "not require hospitalization", "avoid eating", "in the hospital",
]  # fmt: skip


def _random_text(rnd: random.Random) -> str:
    return " ".join(rnd.choice(_FRAGMENTS) for _ in range(rnd.randint(1, 12)))


def _outcome(sections: list[Section], text: str) -> object:
    try:
        return extract_fields(sections), find_spans(text), find_spans(text, vague=True)
    except KeyError as exc:  # "ſeveral days": re.I matches a word the unit table lacks (as before)
        return f"KeyError {exc}"


def test_pre_checks_and_lower_case_patterns_change_no_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keyword pre-checks, the case-sensitive patterns on lower-cased text and the faster sentence
    pattern are shortcuts only: on random texts, results equal those of the full case-insensitive
    patterns run on everything."""
    rnd = random.Random(5)
    keys = ["duration", "recovery", "preparation", "anesthesia", "setting", "summary"]
    labels = [None, "Duration", "Hospital stay"]
    cases = []
    for _ in range(1500):
        sections = [
            sec(key, _random_text(rnd), _random_text(rnd), label=rnd.choice(labels))
            for key in rnd.sample(keys, 3)
        ]
        cases.append((sections, _random_text(rnd)))
    fast = [_outcome(s, t) for s, t in cases]
    monkeypatch.setattr(fields, "_hit", lambda text, low, words: True)
    monkeypatch.setattr(fields, "_folds", lambda text: True)  # every re.I pattern on the text as written
    monkeypatch.setattr(fields, "_RANGE_LOWER", fields._RANGE)
    monkeypatch.setattr(fields, "_SINGLE_LOWER", fields._SINGLE)
    monkeypatch.setattr(fields, "_VAGUE_LOWER", fields._VAGUE_RE)
    monkeypatch.setattr(fields, "_DIGIT", re.compile(""))  # no digit pre-check either
    monkeypatch.setattr(fields, "_scan_start", lambda text, digit: 0)  # and every scan from the start
    full = [_outcome(s, t) for s, t in cases]
    assert fast == full
    assert sum(1 for f in fast if isinstance(f, tuple) and f[1]) > 200  # the texts do hold time amounts


def test_sentence_breaks_are_those_of_the_plain_pattern() -> None:
    """``_SENTENCE`` (and the shortcut of ``sentences`` for texts that cannot break) is a faster
    spelling of ``(?<=[.;!?])\\s+|\\n+``: the same pieces on any text."""
    plain = re.compile(r"(?<=[.;!?])\s+|\n+")
    rnd = random.Random(3)
    alphabet = [".", ";", "!", "?", "\n", " ", "\u2028", "\t", "a", "b", "\r", "\n\n", ". ", "\u00a0"]
    for _ in range(20000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 14)))
        assert fields._SENTENCE.split(text) == plain.split(text), repr(text)
        assert sentences([text]) == [x for p in plain.split(text) if (x := p.strip())], repr(text)


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("recovery takes \u017feveral days", "d"),
        ("it lasts 2 m\u0131nutes", "min"),
        ("about 3 \u212aB", None),
    ],
)
def test_unit_words_matched_by_case_folding_do_not_crash(text: str, unit: str | None) -> None:
    # the patterns match case-insensitively ("ſ" ~ "s", "ı" ~ "i"); the unit tables must find them too
    spans = find_spans(text, vague=True)
    assert [s.unit for s in spans] == ([unit] if unit else [])
