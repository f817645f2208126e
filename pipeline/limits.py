"""Per-page resource limits: how big, how nested, how many list items and how slow a page may be.

A hostile page must cost bounded time and memory and end as a record or a one-line reject, never
as a hung or exhausted worker. ``parse_page`` enforces these limits (``pipeline.api``):

- ``max_page_bytes`` (default 5 MiB, ``PROCPIPE_MAX_PAGE_BYTES``): "page too large (N bytes > limit)".
- ``max_elements`` (default 100,000 HTML start tags, ``PROCPIPE_MAX_ELEMENTS``): counted before the
  HTML parser builds a tree, because a tree costs about 1 KiB per element.
- ``max_list_items`` (default 10,000, ``PROCPIPE_MAX_LIST_ITEMS``): list items on one page, counted
  before parsing (``<li`` tags, bullet lines) and again, exactly, in the parsed Document.
- ``max_depth`` (default 32, ``PROCPIPE_MAX_DEPTH``): list nesting levels in the parsed Document,
  the only nested structure consumers walk. (HTML element depth is capped at 255 by libxml2 and
  every front end walks its input without recursion, so 50,000 nested divs just parse.)
- ``max_parse_seconds`` (default 10 s, ``PROCPIPE_MAX_PARSE_SECONDS``; 0 turns it off): the time
  budget of one page from decoding to the validated record; "too slow to parse (over N s)".

The time budget is enforced by ``SIGALRM`` (``signal.setitimer``) when the page is parsed in the
main thread (a worker process, the CLI, tests): the alarm interrupts pure-Python work anywhere.
Elsewhere (threads) it is cooperative: the front ends call ``check_deadline()`` as they go, and
``parse_page`` calls it between stages.
"""

from __future__ import annotations

import _signal
import contextvars
import dataclasses
import os
import re
import signal
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

from pipeline.errors import RejectedPage, UsageError
from pipeline.parse.document import Document, Item, ListBlock

ENV_VARS: dict[str, str] = {
    "max_page_bytes": "PROCPIPE_MAX_PAGE_BYTES",
    "max_elements": "PROCPIPE_MAX_ELEMENTS",
    "max_list_items": "PROCPIPE_MAX_LIST_ITEMS",
    "max_depth": "PROCPIPE_MAX_DEPTH",
    "max_parse_seconds": "PROCPIPE_MAX_PARSE_SECONDS",
}


@dataclass(frozen=True)
class Limits:
    """What one page may cost. Every limit is a positive number; ``max_parse_seconds=0`` means no budget."""

    max_page_bytes: int = 5 * 1024 * 1024
    max_elements: int = 100_000
    max_list_items: int = 10_000
    max_depth: int = 32
    max_parse_seconds: float = 10.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"limit {f.name} must be a number, got {value!r}")
            if value < 0 or (value == 0 and f.name != "max_parse_seconds") or value != value:
                raise UsageError(f"limit {f.name} must be positive, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Defaults overridden by the ``PROCPIPE_MAX_*`` environment variables that are set.

        Raises ``UsageError`` naming the variable when a value is not a number.
        """
        env = os.environ if environ is None else environ
        values: dict[str, int | float] = {}
        for name, var in ENV_VARS.items():
            text = env.get(var, "").strip()
            if not text:
                continue
            try:
                values[name] = float(text) if name == "max_parse_seconds" else int(text.replace("_", ""))
            except ValueError:
                kind = "a number of seconds" if name == "max_parse_seconds" else "a whole number"
                raise UsageError(f"{var} must be {kind}, got {text!r}") from None
        try:
            return cls(**values)  # type: ignore[arg-type]
        except UsageError as exc:
            raise UsageError(f"{exc} (from the environment)") from None


#: Limits already built, by the raw values of ``ENV_VARS`` they were built from (a few at most).
_built: dict[tuple[str | None, ...], Limits] = {}
_ENV_NAMES = tuple(ENV_VARS.values())


def _env_values() -> tuple[str | None, ...]:
    """The raw values of ``ENV_VARS`` (None: unset)."""
    return tuple(os.environ.get(name) for name in _ENV_NAMES)


def current_limits() -> Limits:
    """The limits in force: the environment's (read on every call, so tests and workers see changes).

    Only the variables are read per call; the checked ``Limits`` is built once per set of values.
    """
    values = _env_values()
    lim = _built.get(values)
    if lim is None:
        env = {name: value for name, value in zip(_ENV_NAMES, values, strict=True) if value is not None}
        lim = Limits.from_env(env)  # raises UsageError for a bad value: never cached
        if len(_built) >= 64:
            _built.clear()
        _built[values] = lim
    return lim


# -- cheap counts before parsing ---------------------------------------------------------------------

_START_TAG = re.compile(r"<[A-Za-z]")
_LI_TAG = re.compile(r"<li[\s>/]", re.I)
_BULLET_LINE = re.compile(r"^[ \t>]*(?:[-*+•●◦▪–]|\d{1,3}[.)])[ \t]+\S", re.M)


def _count(pattern: re.Pattern[str], text: str, stop: int) -> int:
    """Matches of ``pattern`` in ``text``, counting no further than ``stop`` (linear, no big lists)."""
    n = 0
    for _ in pattern.finditer(text):
        n += 1
        if n > stop:
            break
    return n


def check_size(size: int, limits: Limits) -> None:
    """Refuse a page of ``size`` bytes over ``max_page_bytes``."""
    if size > limits.max_page_bytes:
        raise RejectedPage(f"page too large ({size} bytes > {limits.max_page_bytes})", stage="read")


def precheck(text: str, kind: str, limits: Limits) -> None:
    """Refuse, before any tree is built, a page with too many elements or list items.

    The counts are of markup (``<li`` tags, bullet lines), so they can only overestimate what the
    parser would keep; a page just under a limit is caught exactly by ``check_document``.
    """
    if kind == "html":
        tags = text.count("<")  # an upper bound of both counts: most pages stop here
        if tags > limits.max_list_items:
            n = _count(_LI_TAG, text, 100 * limits.max_list_items)
            if n > limits.max_list_items:
                raise RejectedPage(_too_many_items(n, limits), stage="parse")
        if tags > limits.max_elements:
            n = _count(_START_TAG, text, 100 * limits.max_elements)
            if n > limits.max_elements:
                more = "+" if n > 100 * limits.max_elements else ""
                reason = f"too many HTML elements ({n}{more} > {limits.max_elements})"
                raise RejectedPage(reason, stage="parse")
    elif text.count("\n") >= limits.max_list_items:
        n = _count(_BULLET_LINE, text, 100 * limits.max_list_items)
        if n > limits.max_list_items:
            raise RejectedPage(_too_many_items(n, limits), stage="parse")


def _too_many_items(n: int, limits: Limits) -> str:
    more = "+" if n > 100 * limits.max_list_items else ""
    return f"too many list items ({n}{more} > {limits.max_list_items})"


def check_document(doc: Document, limits: Limits) -> None:
    """Refuse a parsed Document whose lists hold too many items or nest too deeply (iterative walk).

    A plain count level by level first; only a page over a limit takes the exact walk that decides
    which refusal it gets.
    """
    level = [b.items for b in doc.blocks if isinstance(b, ListBlock)]
    count = depth = 0
    while level:
        depth += 1
        deeper: list[list[Item]] = []
        for items in level:
            count += len(items)
            for it in items:
                if it.children:
                    deeper.append(it.children)
        if count > limits.max_list_items or (depth > limits.max_depth and count):
            _check_document_exactly(doc, limits)
            return
        level = deeper


def _check_document_exactly(doc: Document, limits: Limits) -> None:
    count = 0
    deepest = 0
    stack: list[tuple[list[Item], int]] = [(b.items, 1) for b in doc.blocks if isinstance(b, ListBlock)]
    while stack:
        items, depth = stack.pop()
        count += len(items)
        if count > limits.max_list_items:
            raise RejectedPage(f"too many list items (over {limits.max_list_items})", stage="parse")
        if items:
            deepest = max(deepest, depth)
            if deepest > limits.max_depth:
                raise RejectedPage(f"lists nested too deeply (over {limits.max_depth} levels)", stage="parse")
        stack.extend((it.children, depth + 1) for it in items if it.children)


# -- the time budget ---------------------------------------------------------------------------------


class ParseTimeout(BaseException):
    """The page's time budget ran out. A BaseException, so no ``except Exception`` on the way swallows it;
    ``parse_page`` turns it into ``RejectedPage("too slow to parse (over N s)")``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"too slow to parse (over {seconds:g} s)")
        self.seconds = seconds


_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "procpipe_parse_deadline", default=None
)


def check_deadline() -> None:
    """Raise ``ParseTimeout`` when the current page's budget has run out (cheap; call it in loops)."""
    d = _deadline.get()
    if d is not None and time.monotonic() > d[0]:
        raise ParseTimeout(d[1])


def _can_use_alarm() -> bool:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return False
    # someone else's alarm is running (e.g. a test timeout): do not take it over
    return signal.getitimer(signal.ITIMER_REAL)[0] == 0.0


class _Budget:
    """The context manager behind ``time_budget``: a class, not a generator, since it runs per page.

    Handlers are swapped with ``_signal.signal`` (what ``signal.signal`` calls, without its enum
    conversions, which cost more than the swap itself); the previous handler is restored as it was.
    """

    __slots__ = ("_seconds", "_token", "_previous", "_alarm", "_armed")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._token: contextvars.Token[tuple[float, float] | None] | None = None
        self._previous: object = None
        self._alarm = False  # our handler is installed (restore the previous one on exit)
        self._armed = False  # ... and may still raise (once)

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self._armed:
            self._armed = False
            raise ParseTimeout(self._seconds)

    def __enter__(self) -> str:
        seconds = self._seconds
        if not seconds or seconds <= 0:
            return "off"
        self._token = _deadline.set((time.monotonic() + seconds, seconds))
        try:
            if not _can_use_alarm():
                return "cooperative"
            self._previous = _signal.signal(_signal.SIGALRM, self._on_alarm)
            self._alarm = self._armed = True
            _signal.setitimer(_signal.ITIMER_REAL, seconds)
        except BaseException:  # including our own alarm, under a budget shorter than this method
            self.__exit__()
            raise
        return "alarm"

    def __exit__(self, *exc: object) -> None:
        token = self._token
        if token is None:
            return
        try:
            if self._alarm:
                self._alarm = self._armed = False
                try:
                    _signal.setitimer(_signal.ITIMER_REAL, 0)
                finally:
                    _signal.signal(_signal.SIGALRM, self._previous)  # type: ignore[arg-type]
        finally:
            self._token = None
            _deadline.reset(token)


def time_budget(seconds: float) -> AbstractContextManager[str]:
    """Run the block under a budget of ``seconds`` (0: none); yields the mode: "alarm", "cooperative", "off".

    Over budget, ``ParseTimeout`` is raised inside the block: by the alarm signal in the main thread,
    else at the next ``check_deadline()``.
    """
    return _Budget(seconds)
