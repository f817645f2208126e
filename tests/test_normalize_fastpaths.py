"""The normalize stage's faster spellings give what the plain patterns give, on any text.

Each shortcut (a lower-cased scan instead of ``re.I``, a lookahead or lookbehind that lets the regex
engine skip positions, a guard before a rewrite) is checked against the pattern it stands for.
"""

from __future__ import annotations

import random
import re

from pipeline.normalize import fields, names
from pipeline.normalize.names import _Collector

#: every label ``_EMBEDDED`` knows, in the spellings pages use
_LABELS = [
    "Common Name", "common names", "Commonly Used Terms", "Other names", "Popular Name", "Alternative Names",
    "Alternate Term", "Lay terms", "Common name(s)", "Technical Term", "Medical/Technical Name",
    "Clinical / Medical term", "Scientific name", "Official Name", "Medical Term(s)", "Procedure Name",
    "Name of the Procedure", "name of procedure", "Also Known As", "ALSO KNOWN AS", "OTHER NAMES",
]  # fmt: skip


def _plain_labels(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group("label")) for m in names._EMBEDDED.finditer(text)]


def _fast_labels(text: str) -> list[tuple[int, int, str]]:
    low = text.lower()
    return [
        (m.start(), m.end(), text[m.start("label") : m.end("label")])
        for m in names._EMBEDDED_LOWER.finditer(low)
    ]


def test_embedded_labels_found_alike_in_lower_case_with_the_lookahead() -> None:
    rnd = random.Random(5)
    words = [
        *_LABELS,
        "X-ray",
        "of",
        "the",
        "name",
        "term",
        ":",
        " : ",
        ",",
        "(",
        ")",
        "and",
        "known",
        "Also",
    ]
    for label in _LABELS:  # each label alone, in a line, and run into the word before it
        for text in (f"{label}: A", f"Knee brace {label}: A, B", f"Scan{label}: A"):
            assert _fast_labels(text) == _plain_labels(text), text
        assert _plain_labels(f"Knee brace {label}: A"), label  # the list holds real labels
    for _ in range(20000):
        text = " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 9)))
        assert _fast_labels(text) == _plain_labels(text), text


def test_a_name_line_with_embedded_labels_reads_the_same_with_non_ascii_text() -> None:
    # a non-ASCII line takes the re.I pattern on the text as written; the labels found are the same
    for accent in ("", "\u00e9"):
        col = _Collector(None)
        col.line(f"Caf{accent} scan Common names: Bone scan, Skeletal scan Medical Term: Bone scintigraphy")
        assert col.names.procedure_name == f"Caf{accent} scan"
        assert col.names.common_names == ["Bone scan", "Skeletal scan"]
        assert col.names.technical_term == "Bone scintigraphy"


def test_an_hour_rewrite_matches_the_plain_word_boundary_pattern() -> None:
    plain = re.compile(rf"\ban? ({fields._UNIT_RE})\b")
    rnd = random.Random(9)
    pieces = [
        "a",
        "an",
        "ban",
        "a ",
        "an ",
        "hour",
        "day",
        "week",
        "minutes",
        "_",
        "1",
        "é",
        " ",
        "-",
        "a-",
        "na",
    ]
    for _ in range(30000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 10)))
        assert fields._A_UNIT.sub(r"1 \1", text) == plain.sub(r"1 \1", text), text


def test_the_range_scan_lookahead_holds_every_qualifier_start() -> None:
    # a qualifier the lookahead did not allow would lose "about 2 to 3 hours" style ranges
    for q in f"{fields._Q_MAX}|{fields._Q_MIN}|{fields._Q_EXACT}".split("|"):
        text = f"it takes {q.replace(chr(92) + '.?', '.')} 2 to 3 hours"
        plain = [m.group("q") for m in re.compile(fields._RANGE.pattern).finditer(text)]
        fast = [m.group("q") for m in fields._RANGE_LOWER.finditer(text)]
        assert fast == plain and plain, text
