"""robots.txt: fetched once per origin, parsed with Protego (Scrapy's parser), asked before every request.

Follows RFC 9309: a 4xx (or a robots.txt that cannot be reached because its redirect is refused)
means no rules, so everything is allowed; a 5xx, timeout or connection failure after the fetcher's
retries means the site is unreachable, so everything on that origin is disallowed for this crawl.
Only the first 500 KiB are parsed. Crawl-delay and Request-rate for our User-Agent lengthen the
host's interval in the rate limiter (never shorten it).

Settings that change it: ``obey_robots`` (False skips all of this), ``user_agent``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from protego import Protego

from pipeline.sources.fetch import Fetcher, FetchFailed, Stats, host_of

MAX_ROBOTS_BYTES = 500 * 1024


@dataclass
class RobotsRules:
    """One origin's rules: a parser, or a blanket allow/deny with the reason."""

    parser: Protego | None
    allow_all: bool
    note: str = ""

    def can_fetch(self, url: str, user_agent: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, user_agent))


def origin_of(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme.lower()}://{p.netloc.lower()}"


def parse_robots(text: str) -> Protego:
    return Protego.parse(text[:MAX_ROBOTS_BYTES])


class RobotsCache:
    """Answers "may we fetch this URL?" for every origin the crawl touches."""

    def __init__(self, fetcher: Fetcher, *, stats: Stats | None = None, obey: bool = True) -> None:
        self.fetcher = fetcher
        self.stats = stats or fetcher.stats
        self.obey = obey
        self.user_agent = fetcher.settings.user_agent
        self._rules: dict[str, RobotsRules] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def rules(self, url: str) -> RobotsRules:
        origin = origin_of(url)
        if origin in self._rules:
            return self._rules[origin]
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin not in self._rules:
                self._rules[origin] = await self._load(origin)
        return self._rules[origin]

    async def _load(self, origin: str) -> RobotsRules:
        robots_url = origin + "/robots.txt"
        self.stats.inc("robots/request_count")
        try:
            resp = await self.fetcher.fetch(robots_url, accept=None, max_bytes=MAX_ROBOTS_BYTES)
        except FetchFailed as e:
            if e.kind.startswith("http_4") or e.kind in (
                "offsite",
                "redirects",
                "scheme",
                "too_large",
                "content_type",
                "private_address",
            ):
                self.stats.inc("robots/missing")
                return RobotsRules(None, True, f"no robots.txt ({e.reason})")
            self.stats.inc("robots/unreachable")
            return RobotsRules(None, False, f"robots.txt unreachable ({e.reason})")
        self.stats.inc("robots/response_count")
        text = resp.content.decode("utf-8", errors="replace")
        try:
            parser = parse_robots(text)
        except Exception as e:  # noqa: BLE001 - a broken robots.txt means no usable rules
            self.stats.inc("robots/unparsable")
            return RobotsRules(None, True, f"robots.txt unparsable ({type(e).__name__})")
        delay = parser.crawl_delay(self.user_agent)
        rate = parser.request_rate(self.user_agent)
        if rate is not None and rate.requests:
            delay = max(delay or 0.0, rate.seconds / rate.requests)
        if delay:
            self.stats.inc("robots/crawl_delay")
            self.fetcher.limiter.set_delay(host_of(origin), float(delay))
        return RobotsRules(parser, True)

    async def allowed(self, url: str) -> tuple[bool, str]:
        """(allowed, reason when not)."""
        if not self.obey:
            return True, ""
        rules = await self.rules(url)
        if rules.can_fetch(url, self.user_agent):
            return True, ""
        self.stats.inc("robots/forbidden")
        return False, rules.note or "disallowed by robots.txt"
