"""Typed fields read from section text: durations, hospital stay, recovery, fasting, anesthesia, setting.

Each field is null (or empty) when the page does not say. Ranges keep both ends ("2 to 4 hours" ->
120/240); "less than 5 minutes" has no minimum, "at least 8 hours" no maximum; "about 45 minutes" is
45/45. Number words count ("one to two days"); months become weeks. Vague amounts ("a few days") are
read only where a rough figure is still useful (procedure duration, recovery), never for fasting or
hospital stays. ``min <= max`` always holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from schemas import Item, Section, Subsection

_UNITS = {
    "second": "s", "seconds": "s", "sec": "s", "secs": "s",
    "minute": "min", "minutes": "min", "min": "min", "mins": "min",
    "hour": "h", "hours": "h", "hr": "h", "hrs": "h",
    "day": "d", "days": "d", "night": "d", "nights": "d",
    "week": "w", "weeks": "w", "wk": "w", "wks": "w",
    "month": "mo", "months": "mo",
    "year": "y", "years": "y",
}  # fmt: skip
_UNIT_RE = "|".join(sorted(_UNITS, key=len, reverse=True))
_SMALL = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}  # fmt: skip
_VAGUE = {"a few": (2.0, 5.0), "few": (2.0, 5.0), "several": (3.0, 7.0), "a couple of": (2.0, 3.0),
          "a couple": (2.0, 3.0)}  # fmt: skip

_Q_MAX = (
    r"less than|fewer than|under|up to|no more than|not more than|at most|within|a maximum of|maximum of|max"
)
_Q_MIN = r"at least|more than|over|a minimum of|minimum of|longer than|upwards of"
_Q_EXACT = r"about|approximately|approx\.?|around|roughly|nearly|almost|typically|usually|generally|~"
_NUM = r"\d+(?:\.\d+)?"
_RANGE = re.compile(
    rf"(?:(?P<q>{_Q_MAX}|{_Q_MIN}|{_Q_EXACT})\s+)?(?:between\s+)?(?P<a>{_NUM})\s*(?P<ua>{_UNIT_RE})?\s*"
    rf"(?:-|to|and|or)\s*(?P<b>{_NUM})\s*(?P<ub>{_UNIT_RE})\b",
    re.I,
)
_SINGLE = re.compile(
    rf"(?:(?P<q>{_Q_MAX}|{_Q_MIN}|{_Q_EXACT})\s+)?(?P<a>{_NUM})[\s-]*(?P<ua>{_UNIT_RE})\b", re.I
)
_VAGUE_RE = re.compile(
    rf"(?:(?P<q>{_Q_MAX}|{_Q_MIN}|{_Q_EXACT})\s+)?(?P<v>a few|a couple of|a couple|several|few)\s+"
    rf"(?P<ua>{_UNIT_RE})\b",
    re.I,
)
# The same three patterns without re.I, for the lower-cased text find_spans reads: there re.I only
# matters for "ı" and "ſ" (an ASCII "i"/"s" to re.I), so text without them takes these, which the
# regex engine scans about three times faster.
# Each also opens with a lookahead for the characters a match can start with (a qualifier's first
# letter, "between", a digit; for the vague one also its words): most positions then fail on one
# character-set test instead of trying the thirty qualifier alternatives one by one. A necessary
# condition only, so the matches are the same.
_Q_FIRST = "".join(sorted({q[0] for q in f"{_Q_MAX}|{_Q_MIN}|{_Q_EXACT}".split("|")}))
if not all(c.isalpha() or c == "~" for c in _Q_FIRST):
    raise ValueError("a qualifier starts with a character the lookahead class cannot hold as is")
_RANGE_LOWER = re.compile(rf"(?=[{_Q_FIRST}b\d])" + _RANGE.pattern)
_SINGLE_LOWER = re.compile(rf"(?=[{_Q_FIRST}\d])" + _SINGLE.pattern)
_VAGUE_LOWER = re.compile(rf"(?=[{_Q_FIRST}asf])" + _VAGUE_RE.pattern)
_VAGUE_WORDS = ("few", "couple", "several")
_DIGIT = re.compile(r"\d")  # what ``_NUM`` needs first (any Unicode digit, as ``\d`` there)
_NO_MATCH = re.compile(r"(?!)")
#: Sentence breaks: whitespace after [.;!?], or newlines. Written as ``(?<=[.;!?])\s+|\n+`` it scans
#: 3x slower: a pattern opening with a character class lets the engine skip to the next whitespace
#: in C. Same splits (the whitespace run after the punctuation, or the newline run).
_SENTENCE = re.compile(r"\s(?:(?<=[.;!?]\s)\s*|(?<=\n)\n*)")

# _words_to_digits, compiled once
_HALF_HOUR = re.compile(r"\bhalf an? hour\b|\bhalf-hour\b|\bhalf hour\b")
_HOUR_AND_HALF = re.compile(r"\ban hour and a half\b")
_OVERNIGHT = re.compile(r"\bovernight\b")
_TENS_RE = re.compile(rf"\b({'|'.join(_TENS)})(?:[- ]({'|'.join(_SMALL)}))?\b")
_SMALL_RE = re.compile(rf"\b({'|'.join(_SMALL)})\b")
_AND_A_HALF = re.compile(r"\b(\d+) and a half\b")
#: ``\ban? (unit)\b`` with the word boundary checked after the "a" (a lookbehind): a pattern opening
#: with a literal lets the engine jump from "a" to "a" in C; same matches, same group
_A_UNIT = re.compile(rf"a(?<=\ba)n? ({_UNIT_RE})\b")
_HOURS_MINUTES = re.compile(
    r"\b(\d+(?:\.\d+)?)\s*(?:hours?|hrs?),?\s*(?:and\s+)?(\d+)\s*(?:minutes?|mins?)\b"
)
_Q_MAX_RE = re.compile(_Q_MAX)
_Q_MIN_RE = re.compile(_Q_MIN)

#: characters that a case-insensitive pattern matches to an ASCII letter although ``str.lower()``
#: does not turn them into it (dotted/dotless i, long s, Kelvin sign): a text holding one of them
#: skips the cheap keyword pre-checks below and goes through the full patterns
_FOLDS_TO_ASCII = frozenset("\u0130\u0131\u017f\u212a")


def _folds(text: str) -> bool:
    """True when ``text`` holds a character of ``_FOLDS_TO_ASCII``."""
    return not text.isascii() and not _FOLDS_TO_ASCII.isdisjoint(text)


class _Lowered:
    """A case-insensitive pattern run as a case-sensitive one on the lower-cased text, 2-5x faster
    (``re.I`` defeats the engine's literal prefix scan). Exact for patterns written in lower case:
    ``str.lower()`` maps every character ``re.I`` would match to an ASCII letter onto that letter,
    except those of ``_FOLDS_TO_ASCII``, so a text holding one of them uses the ``re.I`` pattern."""

    __slots__ = ("ci", "cs")

    def __init__(self, ci: re.Pattern[str]) -> None:
        self.ci = ci
        self.cs = re.compile(ci.pattern, ci.flags & ~re.I)

    def search(self, text: str, low: str | None = None) -> bool:
        """``bool(ci.search(text))``; ``low`` is ``text.lower()`` when the caller has it."""
        if _folds(text):
            return self.ci.search(text) is not None
        return self.cs.search(text.lower() if low is None else low) is not None


class _AnyOf(_Lowered):
    """``_Lowered`` for a pattern of top-level alternatives ``A|B|...``, given with, for each, words
    one of which every match of it holds: each alternative is searched alone, and only when one of
    its words is in the lower-cased text. The regex engine tries every alternative at every
    position of the text; here most alternatives are never scanned. Same answer: an alternation
    matches somewhere exactly when one of its alternatives does."""

    __slots__ = ("parts",)

    def __init__(self, ci: re.Pattern[str], parts: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
        if ci.pattern != "|".join(part for part, _ in parts):
            raise ValueError("the parts must spell the pattern")
        super().__init__(ci)
        flags = ci.flags & ~re.I
        self.parts = tuple((words, re.compile(part, flags)) for part, words in parts)

    def search(self, text: str, low: str | None = None) -> bool:
        if _folds(text):
            return self.ci.search(text) is not None
        if low is None:
            low = text.lower()
        for words, cs in self.parts:
            for w in words:
                if w in low:
                    if cs.search(low) is not None:
                        return True
                    break
        return False


def may_contain(text: str, words: tuple[str, ...]) -> bool:
    """False only when no case-insensitive pattern needing one of ``words`` (lower-case ASCII) can
    match ``text``: a cheap test before a slow ``re.I`` scan."""
    return _hit(text, text.lower(), words)


def _hit(text: str, low: str, words: tuple[str, ...]) -> bool:
    """``may_contain(text, words)`` with ``low`` = ``text.lower()`` already at hand."""
    for w in words:
        if w in low:
            return True
    return not text.isascii() and not _FOLDS_TO_ASCII.isdisjoint(text)


@dataclass
class Span:
    """A time amount in one unit: ``lo``/``hi`` may be None for open ends."""

    lo: float | None
    hi: float | None
    unit: str


def _words_to_digits(low: str) -> str:
    """The lower-cased text with number words, "half an hour", "overnight", "an hour" as digits."""
    t = low.replace("\u2013", "-").replace("\u2014", "-").replace("\u00a0", " ")
    if "half" in t:
        t = _HALF_HOUR.sub("30 minutes", t)
        t = _HOUR_AND_HALF.sub("1.5 hours", t)
    if "overnight" in t:
        t = _OVERNIGHT.sub("1 night", t)
    if "ty" in t:  # every tens word ends in "ty"
        t = _TENS_RE.sub(_tens_sub, t)
    t = _SMALL_RE.sub(lambda m: str(_SMALL[m.group(1)]), t)
    if "half" in t:
        t = _AND_A_HALF.sub(lambda m: f"{m.group(1)}.5", t)
    if "a " in t or "an " in t:
        t = _A_UNIT.sub(r"1 \1", t)
    if "min" not in t or ("hour" not in t and "hr" not in t):  # _HOURS_MINUTES needs both words
        return t
    # "1 hour and 30 minutes" is one amount, not a range
    return _HOURS_MINUTES.sub(lambda m: f"{round(float(m.group(1)) * 60 + int(m.group(2)))} minutes", t)


def _tens_sub(m: re.Match[str]) -> str:
    return str(_TENS[m.group(1)] + (_SMALL[m.group(2)] if m.group(2) else 0))


# every match of _RANGE / _SINGLE / _VAGUE_RE ends in a unit: each unit word holds one of these, and
# so does every phrase _words_to_digits turns into a unit ("half an hour", "overnight")
_UNIT_WORDS = ("sec", "min", "hour", "hr", "day", "night", "week", "wk", "month", "year")


def _key(word: str) -> str:
    """A matched unit or vague word as the tables spell it. The patterns match case-insensitively,
    so "ſeconds" (long s), "mınutes" (dotless i) or "İ" come through; ``lower()`` alone would leave
    them out of the tables."""
    k = word.lower()
    if k.isascii():
        return k
    return k.replace("\u017f", "s").replace("\u0131", "i").replace("\u0307", "")


def find_spans(text: str, *, vague: bool = False, low: str | None = None) -> list[Span]:
    """Every time amount in ``text``, in order of appearance (``low``: ``text.lower()``, if at hand)."""
    if low is None:
        low = text.lower()
    if not _hit(text, low, _UNIT_WORDS):
        return []
    t = _words_to_digits(low)
    if "\u0131" in t or "\u017f" in t:
        range_re, single_re, vague_re = _RANGE, _SINGLE, _VAGUE_RE
    else:
        range_re, single_re, vague_re = _RANGE_LOWER, _SINGLE_LOWER, _VAGUE_LOWER
    found: list[tuple[int, Span]] = []
    taken: list[tuple[int, int]] = []
    digit = _DIGIT.search(t)
    if digit is None:  # every match of the range and single patterns holds a digit
        range_re = single_re = _NO_MATCH
    elif _DIGIT.search(t, digit.end()) is None:  # a range holds two numbers: two digits at least
        range_re = _NO_MATCH
    first = 0 if digit is None else _scan_start(t, digit.start())

    for m in range_re.finditer(t, first):
        a, b = float(m.group("a")), float(m.group("b"))
        ub = _UNITS[_key(m.group("ub"))]
        ua = _UNITS[_key(m.group("ua"))] if m.group("ua") else ub
        lo: float | None = _to(a, ua, ub)
        hi: float | None = b
        q = (m.group("q") or "").lower()
        if _Q_MAX_RE.fullmatch(q) and q != "within":  # "within 2 to 3 weeks" keeps both ends
            lo = None
        elif _Q_MIN_RE.fullmatch(q):
            hi = None
        found.append((m.start(), Span(lo, hi, ub)))
        taken.append((m.start(), m.end()))
    for m in single_re.finditer(t, first):
        if taken and not _free(m, taken):
            continue
        v, u = float(m.group("a")), _UNITS[_key(m.group("ua"))]
        found.append((m.start(), _qualified(v, v, u, m.group("q"))))
        taken.append((m.start(), m.end()))
    if vague and _hit(t, t, _VAGUE_WORDS):
        for m in vague_re.finditer(t):
            if taken and not _free(m, taken):
                continue
            lo, hi = _VAGUE[_key(m.group("v"))]
            found.append((m.start(), _qualified(lo, hi, _UNITS[_key(m.group("ua"))], m.group("q"))))
    if len(found) < 2:
        return [s for _, s in found]
    return [s for _, s in sorted(found, key=_first)]


def _free(m: re.Match[str], taken: list[tuple[int, int]]) -> bool:
    """Whether the match overlaps none of the ``taken`` (start, end) spans."""
    return all(m.end() <= a or m.start() >= b for a, b in taken)


def _first(x: tuple[int, Span]) -> int:
    return x[0]


#: The longest qualifier ``_RANGE``/``_SINGLE`` accept before a number ("approximately")
_Q_LONGEST = max(len(q.replace("\\.?", ".")) for q in f"{_Q_MAX}|{_Q_MIN}|{_Q_EXACT}".split("|"))


def _scan_start(t: str, d: int) -> int:
    """Where a scan of ``t`` for ``_RANGE``/``_SINGLE`` may start when its first digit is at ``d``:
    a match holds a number, and before its first number only "<qualifier> <blanks> between
    <blanks>" (no digit). The text before is not scanned; the matches found are the same."""
    i = d
    while i > 0 and t[i - 1].isspace():
        i -= 1
    i -= 7  # "between"
    while i > 0 and t[i - 1].isspace():
        i -= 1
    return max(0, i - _Q_LONGEST)


def _qualified(lo: float, hi: float, unit: str, q: str | None) -> Span:
    q = (q or "").lower()
    if q and _Q_MAX_RE.fullmatch(q):
        return Span(None, hi, unit)
    if q and _Q_MIN_RE.fullmatch(q):
        return Span(lo, None, unit)
    return Span(lo, hi, unit)


_FACTORS = {  # unit -> size in minutes
    "s": 1 / 60, "min": 1.0, "h": 60.0, "d": 1440.0, "w": 10080.0, "mo": 10080.0 * 52 / 12, "y": 10080.0 * 52,
}  # fmt: skip


def _to(value: float, unit: str, target: str) -> float:
    return value * _FACTORS[unit] / _FACTORS[target]


def _convert(span: Span, target: str) -> tuple[int | None, int | None]:
    """The span in ``target`` units: lower end rounded down, upper end rounded up (so they stay ordered)."""
    unit = span.unit
    lo = None if span.lo is None else int(math.floor(round(_to(span.lo, unit, target), 6)))
    hi = None if span.hi is None else int(math.ceil(round(_to(span.hi, unit, target), 6)))
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    return lo, hi


def sentences(texts: Iterable[str]) -> list[str]:
    out: list[str] = []
    for t in texts:
        last = len(t) - 1
        if (
            "\n" not in t
            and t.find(".", 0, last) < 0
            and t.find(";", 0, last) < 0
            and t.find("!", 0, last) < 0
            and t.find("?", 0, last) < 0
        ):  # no break possible: punctuation, if any, is the last character
            if x := t.strip():
                out.append(x)
            continue
        out.extend([x for s in _SENTENCE.split(t) if (x := s.strip())])
    return out


def section_texts(section: Section) -> list[str]:
    """The section's paragraphs, items ("Label: text") and subsections, as separate texts."""
    out: list[str] = section.text.split("\n\n") if section.text else []
    if section.items:
        _item_texts(section.items, out)
    for sub in section.subsections:  # each line keeps its sub-heading: "Anesthesia: None required."
        lines = [*(sub.text.split("\n\n") if sub.text else []), *_item_texts(sub.items)]
        if lines:
            out.extend(f"{sub.heading}: {line}" for line in lines)
        else:
            out.append(sub.heading)
    return out


def _item_texts(items: list[Item], out: list[str] | None = None) -> list[str]:
    """The "Label: text" (or the text) of every item, nested ones after their parent; appended to ``out``."""
    if out is None:
        out = []
    for it in items:
        out.append(f"{it.label}: {it.text}" if it.label else it.text)
        if it.items:
            _item_texts(it.items, out)
    return out


class SectionTexts:
    """The texts of one record's sections, gathered and split into sentences once for all typed fields
    (several fields read the same sections: recovery, procedure description, ...)."""

    def __init__(self, sections: list[Section]) -> None:
        self.sections = sections
        by_key: dict[str, list[int]] = {}
        for i, s in enumerate(sections):
            k = s.key
            if k in by_key:
                by_key[k].append(i)
            else:
                by_key[k] = [i]
        self._by_key = by_key  # section key -> indexes, in page order
        self._texts: dict[int, list[str]] = {}  # section index -> section_texts
        self._sentences: dict[int, list[tuple[str, str]]] = {}  # index -> (sentence, lower-cased)
        self._joined: dict[int, tuple[str, str]] = {}  # index -> texts joined by newlines, and lowered
        self._labels: list[tuple[str, str, int, Item | Subsection]] | None = None

    def _indexes(self, keys: tuple[str, ...]) -> list[int]:
        """Indexes of the sections with one of ``keys``, in page order."""
        by_key = self._by_key
        if len(keys) == 1:  # one key's indexes are in page order already
            return by_key.get(keys[0], [])
        found = [i for k in keys if k in by_key for i in by_key[k]]
        if len(found) > 1:
            found.sort()
        return found

    def _section_texts(self, i: int) -> list[str]:
        texts = self._texts.get(i)
        if texts is None:
            texts = self._texts[i] = section_texts(self.sections[i])
        return texts

    def _section_sentences(self, i: int) -> list[tuple[str, str]]:
        sents = self._sentences.get(i)
        if sents is None:
            sents = self._sentences[i] = [(x, x.lower()) for x in sentences(self._section_texts(i))]
        return sents

    def _may_contain(self, i: int, words: tuple[str, ...]) -> bool:
        """``may_contain`` of the whole section: False means no sentence of it holds one of ``words``."""
        joined = self._joined.get(i)
        if joined is None:
            text = "\n".join(self._section_texts(i))
            joined = self._joined[i] = (text, text.lower())
        return _hit(joined[0], joined[1], words)

    def _labelled(self) -> list[tuple[str, str, int, Item | Subsection]]:
        """(section key, label or sub-heading, 0 for an item / 1 for a subsection, the object) of every
        labelled item (nested ones too) and every subsection, in page order: what label queries read."""
        if self._labels is None:
            found: list[tuple[str, str, int, Item | Subsection]] = []
            add = found.append
            for s in self.sections:
                items = s.items
                if items:
                    key = s.key
                    for it in items:
                        if it.label:
                            add((key, it.label, 0, it))
                        if it.items:  # nested items, depth first, after their parent
                            _add_labelled(key, it.items, add)
                subs = s.subsections
                if subs:
                    key = s.key
                    for sub in subs:
                        add((key, sub.heading, 1, sub))
            self._labels = found
        return self._labels

    def _label_texts(self, keys: tuple[str, ...], labels: str) -> list[str]:
        out: list[str] = []
        for key, label, is_sub, obj in self._labels if self._labels is not None else self._labelled():
            if key in keys or not _label_hit(labels, label):
                continue
            if not is_sub:
                out.append(f"{label}: {obj.text}")
                continue
            assert isinstance(obj, Subsection)
            lines = [*(obj.text.split("\n\n") if obj.text else []), *_item_texts(obj.items)]
            out.extend(f"{label}: {line}" for line in lines)
        return out

    def texts(self, keys: Iterable[str], labels: str | None = None) -> list[str]:
        """Texts of the sections with these keys, plus items/subsections anywhere labelled ``labels``."""
        keys = tuple(keys)
        out: list[str] = []
        for i in self._indexes(keys):
            out.extend(self._section_texts(i))
        if labels:
            out.extend(self._label_texts(keys, labels))
        return [t for t in out if t]

    def sentences(
        self, keys: Iterable[str], labels: str | None = None, words: tuple[str, ...] | None = None
    ) -> list[str]:
        """``sentences(self.texts(keys, labels))``, each section split once. With ``words``, sections
        that cannot hold any of them (``may_contain``) are left out: for a caller that skips every
        sentence without one, the result is the same, and most sections are then never split."""
        return [x for x, _ in self.lowered(tuple(keys), labels, words)]

    def lowered(
        self, keys: tuple[str, ...], labels: str | None = None, words: tuple[str, ...] | None = None
    ) -> list[tuple[str, str]]:
        """``sentences(keys, labels, words)`` as (sentence, sentence lower-cased) pairs: each section's
        sentences are split and lower-cased once for all the fields that read them."""
        out: list[tuple[str, str]] = []
        joined_cache = self._joined
        sentence_cache = self._sentences
        for i in self._indexes(keys):
            if words is not None:  # self._may_contain(i, words), inline
                joined = joined_cache.get(i)
                if joined is None:
                    text = "\n".join(self._section_texts(i))
                    joined = joined_cache[i] = (text, text.lower())
                if not _hit(joined[0], joined[1], words):
                    continue
            sents = sentence_cache.get(i)
            out.extend(sents if sents is not None else self._section_sentences(i))
        if labels:
            labelled = self._labels if self._labels is not None else self._labelled()
            if labelled and (found := self._label_texts(keys, labels)):
                out.extend((x, x.lower()) for x in sentences(found))
        return out


def _add_labelled(
    key: str, items: list[Item], add: Callable[[tuple[str, str, int, Item | Subsection]], None]
) -> None:
    """``add`` the labelled ones of ``items`` and of their nested items, depth first."""
    for it in items:
        if it.label:
            add((key, it.label, 0, it))
        if it.items:
            _add_labelled(key, it.items, add)


@lru_cache(maxsize=64)
def _label_re(labels: str) -> re.Pattern[str]:
    return re.compile(labels, re.I)


@lru_cache(maxsize=16384)
def _label_hit(labels: str, label: str) -> bool:
    """Whether ``label`` matches the label pattern ``labels``; cached, labels recur across pages."""
    return _label_re(labels).search(label) is not None


@dataclass
class TypedFields:
    duration_minutes_min: int | None = None
    duration_minutes_max: int | None = None
    hospital_stay_days_min: int | None = None
    hospital_stay_days_max: int | None = None
    recovery_weeks_min: int | None = None
    recovery_weeks_max: int | None = None
    fasting_hours_min: int | None = None
    fasting_hours_max: int | None = None
    anesthesia_types: list[str] = field(default_factory=list)
    care_settings: list[str] = field(default_factory=list)


def duration_minutes(
    sections: list[Section], *, texts: SectionTexts | None = None
) -> tuple[int | None, int | None]:
    """How long the procedure takes, from the Duration section (or a "Duration:" label elsewhere)."""
    tx = texts or SectionTexts(sections)
    # find_spans finds nothing in a sentence without a unit word
    for sent, low in tx.lowered(("duration",), r"duration|time required|how long", _UNIT_WORDS):
        for span in find_spans(sent, vague=True, low=low):
            if span.unit in ("s", "min", "h", "d"):
                return _convert(span, "min")
    return None, None


#: ``_STAY`` and ``_SAME_DAY`` as alternatives, each with words one of which its matches hold (``_AnyOf``)
_STAY_PARTS = (
    ("hospital stay", ("hospital stay",)),
    (r"stay(?:s|ing)? (?:\w+ )?(?:in|at) (?:the )?hospital", ("hospital",)),
    ("hospitali[sz]", ("hospitali",)),
    ("admitted", ("admitted",)),
    ("admission", ("admission",)),
    ("inpatient stay", ("inpatient stay",)),
    ("discharged", ("discharged",)),
    ("length of stay", ("length of stay",)),
    ("overnight", ("overnight",)),
    (r"stay (?:of|for) (?:\d|one|two|three|a)", ("stay of ", "stay for ")),
)
_STAY = re.compile("|".join(part for part, _ in _STAY_PARTS), re.I)
_SAME_DAY_PARTS = (
    ("same[- ]day", ("same",)),
    (r"(?:go|return|sent|discharged)(?: \w+){0,3} home (?:\w+ )?(?:the )?same day", ("same day",)),
    ("no hospital stay", ("no hospital stay",)),
    ("does not require (?:a )?hospital stay", ("hospital stay",)),
    ("not require hospitali[sz]ation", ("not require hospitali",)),
    (r"\boutpatient (?:procedure|basis|setting|surgery)", ("outpatient ",)),
)
_SAME_DAY = re.compile("|".join(part for part, _ in _SAME_DAY_PARTS), re.I)
_INPATIENT = re.compile(r"\binpatient\b", re.I)
# every match of _STAY / _SAME_DAY holds one of these (lower-cased): a cheap test before the pattern
_STAY_WORDS = ("hospital", "stay", "admi", "discharged", "overnight")
_SAME_DAY_WORDS = ("same", "hospital", "outpatient")
_STAY_L, _SAME_DAY_L = _AnyOf(_STAY, _STAY_PARTS), _AnyOf(_SAME_DAY, _SAME_DAY_PARTS)
_INPATIENT_L = _Lowered(_INPATIENT)


def hospital_stay_days(
    sections: list[Section], care: list[str], *, texts: SectionTexts | None = None
) -> tuple[int | None, int | None]:
    """Days in hospital: an explicit stay, else 0/0 for same-day or purely outpatient settings."""
    keys = ("recovery", "setting", "duration", "procedure_description", "patient_experience", "summary")
    tx = texts or SectionTexts(sections)
    labels = r"hospital stay|length of stay|recovery"
    for sent, low in tx.lowered(keys, labels, _STAY_WORDS):
        if not _hit(sent, low, _STAY_WORDS) or not _STAY_L.search(sent, low):
            continue
        for span in find_spans(sent, low=low):
            if span.unit in ("h",):
                hi = span.hi if span.hi is not None else span.lo
                if hi is not None and hi < 24:
                    return 0, 0
            if span.unit in ("h", "d", "w"):
                return _convert(span, "d")
    for s, low in tx.lowered(keys, labels, _SAME_DAY_WORDS):
        if _hit(s, low, _SAME_DAY_WORDS):
            if _SAME_DAY_L.search(s, low) and not _INPATIENT_L.search(s, low):
                return 0, 0
    if care and not {"hospital", "inpatient"} & set(care):
        return 0, 0
    return None, None


_RECOVER = re.compile(r"recover|heal|return(?:ing)? to|resum|back to (?:normal|work|usual)|downtime", re.I)
_NOT_RECOVERY = re.compile(r"follow[- ]up|appointment|check[- ]?up|stitches|sutures|visit", re.I)
_IMMEDIATE = re.compile(
    r"immediately|right away|same day|no (?:recovery|downtime)|minimal (?:recovery|downtime)", re.I
)
_RECOVER_L, _NOT_RECOVERY_L, _IMMEDIATE_L = _Lowered(_RECOVER), _Lowered(_NOT_RECOVERY), _Lowered(_IMMEDIATE)
# every match of _RECOVER holds one of these (lower-cased)
_RECOVER_WORDS = ("recover", "heal", "return", "resum", "back to", "downtime")


def recovery_weeks(
    sections: list[Section], *, texts: SectionTexts | None = None
) -> tuple[int | None, int | None]:
    """Weeks until recovered, from the Recovery section (then Patient Experience)."""
    tx = texts or SectionTexts(sections)
    for keys in (("recovery",), ("patient_experience",)):
        for sent, low in tx.lowered(keys, None, _RECOVER_WORDS):
            if not _RECOVER_L.search(sent, low) or _NOT_RECOVERY_L.search(sent, low):
                continue
            for span in find_spans(sent, vague=True, low=low):
                if span.unit in ("d", "w", "mo", "y"):
                    return _convert(span, "w")
            if _IMMEDIATE_L.search(sent, low) and not find_spans(sent, low=low):
                return 0, 0
    return None, None


#: ``_FAST`` and ``_NO_FAST`` as alternatives, each with words one of which its matches hold (``_AnyOf``)
_FAST_PARTS = (
    (r"\bfast(?:ing|ed)?\b", ("fast",)),
    (r"\bnpo\b", ("npo",)),
    ("nil by mouth", ("nil by mouth",)),
    ("nothing (?:to eat|by mouth)", ("nothing ",)),
    (r"(?:not|avoid|refrain from|no) (?:eating|eat)\b", (" eat",)),
    ("empty stomach", ("empty stomach",)),
)
_FAST = re.compile("|".join(part for part, _ in _FAST_PARTS), re.I)
_NO_FAST_PARTS = (
    (r"\bno (?:\w+ ){0,2}fasting", ("fasting",)),
    (r"fasting (?:is )?(?:\w+ )?not (?:required|necessary|needed)", ("fasting",)),
    ("(?:don't|do not|does not|doesn't|not) (?:need|have|required?) to fast", (" to fast",)),
    ("without fasting", ("without fasting",)),
    (r"no (?:\w+ ){0,3}(?:like|such as) fasting", ("fasting",)),
)
_NO_FAST = re.compile("|".join(part for part, _ in _NO_FAST_PARTS), re.I)


# every match of _FAST holds one of these (lower-cased)
_FAST_WORDS = ("fast", "npo", "mouth", "eat", "stomach")
_FAST_L, _NO_FAST_L = _AnyOf(_FAST, _FAST_PARTS), _AnyOf(_NO_FAST, _NO_FAST_PARTS)


def fasting_hours(
    sections: list[Section], *, texts: SectionTexts | None = None
) -> tuple[int | None, int | None]:
    """Hours of fasting before the procedure, from Preparation (0/0 when it says none is needed)."""
    tx = texts or SectionTexts(sections)
    for sent, low in tx.lowered(("preparation",), r"pre-?procedure|instructions|preparation", _FAST_WORDS):
        if not _hit(sent, low, _FAST_WORDS) or not _FAST_L.search(sent, low):
            continue
        for span in find_spans(sent, low=low):
            if span.unit in ("min", "h"):  # "a diet and fasting regimen 1-3 days before" is no fast length
                return _convert(span, "h")
        if _NO_FAST_L.search(sent, low):
            return 0, 0
    return None, None


_TYPE_WORDS = r"general|local|regional|spinal|epidural|topical"
_TYPED = re.compile(
    rf"\b(?:{_TYPE_WORDS})\b(?:\s*(?:,|/|or|and|and/or)\s*(?:{_TYPE_WORDS})\b)*\s+"
    r"(?:an(?:a)?esthe\w*|block|numbing|sedation)",
    re.I,
)
_TYPE_WORD = re.compile(rf"\b(?:{_TYPE_WORDS})\b", re.I)
_SEDATION = re.compile(
    r"\bsedat\w*|\bsedative|twilight|monitored an(?:a)?esthesia care|conscious sedation", re.I
)
_NERVE_BLOCK = re.compile(r"nerve block|regional block", re.I)
_NUMB = re.compile(r"numbing (?:medication|agent|cream|gel|drops|spray)", re.I)
#: The alternatives of ``_NO_ANESTHESIA``, each with words one of which any match of it holds
#: (lower-cased): ``_AnyOf`` scans an alternative only when one of its words is there.
_NO_ANESTHESIA_PARTS = (
    (r"\bno\s+(?:\w+\s+){0,2}(?:an(?:a)?esthe|sedat)", ("no",)),
    (
        r"(?:an(?:a)?esthe\w*|sedation)[^.;]{0,40}?\b"
        r"(?:not (?:required|necessary|needed|applicable|used|typically)|none|n/a|unnecessary)",
        ("not ", "none", "n/a", "unnecessary"),
    ),
    (
        r"(?:does not|doesn't|do not|don't|without|not)\s+(?:\w+\s+){0,3}(?:an(?:a)?esthe|sedat)",
        ("not", "n't", "without"),
    ),
)
_NO_ANESTHESIA = re.compile("|".join(part for part, _ in _NO_ANESTHESIA_PARTS), re.I)


# every match of the anesthesia patterns holds one of these (lower-cased)
_ANESTHESIA_WORDS = ("esthe", "sedat", "block", "numbing", "twilight")
# ... and, pattern by pattern, one of these: a substring test is far cheaper than the scan it skips
_NO_ANESTHESIA_WORDS = ("esthe", "sedat")
_TYPED_WORDS = tuple(_TYPE_WORDS.split("|"))
_SEDATION_WORDS = ("sedat", "twilight", "monitored an")
_BLOCK_WORDS = ("block",)
_NUMB_WORDS = ("numbing",)
_NO_ANESTHESIA_L, _NERVE_BLOCK_L = _AnyOf(_NO_ANESTHESIA, _NO_ANESTHESIA_PARTS), _Lowered(_NERVE_BLOCK)
_NUMB_L, _SEDATION_L, _TYPED_L = _Lowered(_NUMB), _Lowered(_SEDATION), _Lowered(_TYPED)


def anesthesia_types(sections: list[Section], *, texts: SectionTexts | None = None) -> list[str]:
    """general / local / regional / spinal / epidural / sedation, or ["none"] when the page says so."""
    keys = ("anesthesia", "procedure_description", "equipment", "patient_experience")
    found: list[str] = []
    negated = False

    def add(t: str) -> None:
        if t not in found:
            found.append(t)

    tx = texts or SectionTexts(sections)
    for sent, low in tx.lowered(keys, r"an(?:a)?esthe|sedation", _ANESTHESIA_WORDS):
        if not _hit(sent, low, _ANESTHESIA_WORDS):  # none of the patterns below can match
            continue
        if _hit(sent, low, _NO_ANESTHESIA_WORDS) and _NO_ANESTHESIA_L.search(sent, low):
            negated = True
            continue
        if _hit(sent, low, _TYPED_WORDS):
            # the matches are only read lower-cased, so the lower-cased text gives the same words
            typed = _TYPED.finditer(sent) if _folds(sent) else _TYPED_L.cs.finditer(low)
            for m in typed:
                for w in _TYPE_WORD.findall(m.group(0)):
                    add("local" if w.lower() == "topical" else w.lower())
                if m.group(0).lower().endswith("sedation"):
                    add("sedation")
        if _hit(sent, low, _BLOCK_WORDS) and _NERVE_BLOCK_L.search(sent, low):
            add("regional")
        if _hit(sent, low, _NUMB_WORDS) and _NUMB_L.search(sent, low):
            add("local")
        if _hit(sent, low, _SEDATION_WORDS) and _SEDATION_L.search(sent, low):
            add("sedation")
    return found or (["none"] if negated else [])


_ASC_WORDS = r"ambulatory (?:surgical|surgery) (?:center|centre)|surg(?:ical|ery) (?:center|centre)"
_ASC_ACRONYM = re.compile(r"\bASCs?\b")  # capitals only
_SETTINGS = (
    ("hospital", re.compile(r"\bhospitals?\b", re.I)),
    ("inpatient", re.compile(r"\binpatient\b", re.I)),
    ("outpatient", re.compile(r"\boutpatient\b|same[- ]day|day[- ](?:surgery|case)", re.I)),
    (
        "ambulatory_surgical_center",
        re.compile(rf"(?i:{_ASC_WORDS})|{_ASC_ACRONYM.pattern}"),
    ),
    (
        "clinic",
        re.compile(r"\bclinics?\b|\boffices?\b|physician'?s? practice|doctor'?s practice|primary care", re.I),
    ),
    (
        "home",
        re.compile(
            r"\bat home\b|\bhome[- ]based\b|\bhome (?:setting|use|environment|care)\b|"
            r"\bin (?:the|their|your|a) (?:own )?home\b|\bself-administered\b",
            re.I,
        ),
    ),
)
#: _SETTINGS for the lower-cased text (see _Lowered); the ASC acronym is matched in capitals, on the text
#: every match of a setting's pattern holds one of its words (lower-cased): a cheap test before the scan
_SETTING_WORDS = {
    "hospital": ("hospital",),
    "inpatient": ("inpatient",),
    "outpatient": ("outpatient", "same", "day"),
    "ambulatory_surgical_center": ("center", "centre"),
    "clinic": ("clinic", "office", "practice", "primary care"),
    "home": ("home", "self-administered"),
}
_SETTINGS_LOWERED = tuple(
    (name, _SETTING_WORDS[name], re.compile(_ASC_WORDS), _ASC_ACRONYM)
    if name == "ambulatory_surgical_center"
    else (name, _SETTING_WORDS[name], re.compile(rx.pattern, rx.flags & ~re.I), None)
    for name, rx in _SETTINGS
)


def care_settings(sections: list[Section], *, texts: SectionTexts | None = None) -> list[str]:
    """Where it is done (hospital, inpatient, outpatient, ambulatory_surgical_center, clinic, home)."""
    tx = texts or SectionTexts(sections)
    text = " ".join(tx.texts(("setting",), r"^(?:setting|location|care setting|where)"))
    if not text:
        return []
    if _folds(text):
        return [name for name, rx in _SETTINGS if rx.search(text)]
    low = text.lower()
    return [
        name
        for name, words, rx, acronym in _SETTINGS_LOWERED
        if (_hit(text, low, words) and rx.search(low)) or (acronym and "ASC" in text and acronym.search(text))
    ]


def extract_fields(sections: list[Section]) -> TypedFields:
    """All typed fields of a record, from its sections."""
    tx = SectionTexts(sections)
    care = care_settings(sections, texts=tx)
    f = TypedFields(care_settings=care, anesthesia_types=anesthesia_types(sections, texts=tx))
    f.duration_minutes_min, f.duration_minutes_max = duration_minutes(sections, texts=tx)
    f.hospital_stay_days_min, f.hospital_stay_days_max = hospital_stay_days(sections, care, texts=tx)
    f.recovery_weeks_min, f.recovery_weeks_max = recovery_weeks(sections, texts=tx)
    f.fasting_hours_min, f.fasting_hours_max = fasting_hours(sections, texts=tx)
    return f
