"""The polite fetcher: retries and Retry-After, limits, decoding, redirects, rate limiting, address policy.

Mostly ``httpx.MockTransport`` with a fake clock (no real waiting); the address guard is checked
against a real server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from scrape_site import FixtureSite

from pipeline.sources.config import CrawlSettings
from pipeline.sources.fetch import (
    PAGE_TYPES,
    BoundedDecoder,
    Fetcher,
    FetchFailed,
    HostRateLimiter,
    _Fatal,
    _Retry,
    is_public_address,
    parse_retry_after,
)

PAGE = b"<html><body><h1>A page</h1></body></html>"


class FakeClock:
    """A clock whose sleep advances time instantly; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def make_fetcher(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: FakeClock | None = None,
    *,
    allowed: set[str] | None = None,
    rng: Callable[[], float] = lambda: 1.0,
    **settings: Any,
) -> tuple[Fetcher, FakeClock]:
    clock = clock or FakeClock()
    s = CrawlSettings(**{"rate": 1000.0, "jitter": 0.0, "backoff_base": 1.0, **settings})
    limiter = HostRateLimiter(s.rate, jitter=0.0, margin=0.0, clock=clock, sleep=clock.sleep)
    f = Fetcher(
        s,
        allowed_hosts=allowed if allowed is not None else {"site.test"},
        transport=httpx.MockTransport(handler),
        limiter=limiter,
        sleep=clock.sleep,
        rng=rng,
    )
    return f, clock


class Body(httpx.AsyncByteStream):
    """A streamed body, as real transports give (``content=`` would be read and decoded by httpx)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def respond(status: int, body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers={"content-length": str(len(body)), **headers}, stream=Body(body))


def html(body: bytes = PAGE, status: int = 200, **headers: str) -> httpx.Response:
    return respond(status, body, **{"content-type": "text/html; charset=utf-8", **headers})


def fetch(f: Fetcher, url: str, **kw: Any) -> Any:
    async def go() -> Any:
        async with f:
            return await f.fetch(url, **kw)

    return asyncio.run(go())


# ------------------------------------------------------------------ retries


def test_retry_after_in_seconds_and_as_http_date_is_waited_for() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        if len(calls) == 2:
            when = datetime.now(UTC) + timedelta(seconds=30)
            return httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)})
        return html()

    f, clock = make_fetcher(handler)
    resp = fetch(f, "http://site.test/code/cpt4/1")
    assert resp.status == 200 and resp.attempts == 3
    assert clock.sleeps[0] == 7
    assert 28 <= clock.sleeps[1] <= 30
    assert f.stats.counts["retry/retry_after_honoured"] == 2


def test_server_errors_back_off_exponentially_then_fail_with_attempt_count() -> None:
    f, clock = make_fetcher(lambda r: httpx.Response(503), retries=3, backoff_base=1.0, backoff_max=100.0)
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/x")
    assert e.value.attempts == 4 and e.value.reason == "HTTP 503"
    assert clock.sleeps == [1.0, 2.0, 4.0]  # rng=1: the top of each jitter range


def test_backoff_has_jitter_and_a_cap() -> None:
    f, _ = make_fetcher(lambda r: html(), backoff_base=1.0, backoff_max=5.0, rng=lambda: 0.0)
    assert [f.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 2.5, 2.5]
    f2, _ = make_fetcher(lambda r: html(), backoff_base=1.0, backoff_max=5.0, rng=lambda: 1.0)
    assert f2.backoff(10) == 5.0


def test_retry_after_longer_than_the_limit_fails_at_once() -> None:
    f, clock = make_fetcher(
        lambda r: httpx.Response(429, headers={"Retry-After": "86400"}), max_retry_after=60
    )
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/x")
    assert e.value.attempts == 1 and "Retry-After 86400s exceeds" in e.value.reason
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_errors_are_not_retried(status: int) -> None:
    f, clock = make_fetcher(lambda r: httpx.Response(status))
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/x")
    assert e.value.attempts == 1 and e.value.reason == f"HTTP {status}"


@pytest.mark.parametrize(
    ("exc", "reason"),
    [(httpx.ReadTimeout("slow"), "timed out"), (httpx.ConnectError("refused"), "connection error")],
)
def test_timeouts_and_connection_errors_are_retried(exc: Exception, reason: str) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise exc

    f, _ = make_fetcher(handler, retries=2)
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/x")
    assert len(calls) == 3 and e.value.attempts == 3 and e.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), (" 0 ", 0.0), ("2.5", 2.5), ("-3", 0.0), ("soon", None), (None, None), ("", None)],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_in_the_past_means_now() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sun, 31 Dec 2023 00:00:00 GMT", now) == 0.0


# ------------------------------------------------------------------ bodies


class TrackedStream(httpx.AsyncByteStream):
    """A body that counts how much of it was read."""

    def __init__(self, chunks: int, size: int = 65536) -> None:
        self.chunks, self.size, self.read = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield b"a" * self.size


def test_content_type_is_checked_before_the_body_is_read() -> None:
    body = TrackedStream(100)
    f, _ = make_fetcher(
        lambda r: httpx.Response(200, headers={"content-type": "application/pdf"}, stream=body)
    )
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/report.pdf")
    assert e.value.reason == "unsupported content type application/pdf"
    assert body.read == 0


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "text/plain", "application/xhtml+xml"])
def test_html_and_text_content_types_are_accepted(ctype: str) -> None:
    f, _ = make_fetcher(lambda r: respond(200, b"hello", **{"content-type": ctype}))
    assert fetch(f, "http://site.test/x").content == b"hello"


def test_a_declared_oversize_body_is_refused_unread_and_a_streamed_one_stops_at_the_limit() -> None:
    declared = TrackedStream(100)
    f, _ = make_fetcher(
        lambda r: httpx.Response(
            200, headers={"content-type": "text/html", "content-length": str(100 * 65536)}, stream=declared
        ),
        max_bytes=256 * 1024,
    )
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/big")
    assert "larger than 262144 bytes" in e.value.reason and declared.read == 0

    streamed = TrackedStream(100)
    f, _ = make_fetcher(
        lambda r: httpx.Response(200, headers={"content-type": "text/html"}, stream=streamed),
        max_bytes=256 * 1024,
    )
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/big")
    assert e.value.kind == "too_large" and e.value.attempts == 1
    assert streamed.read <= 5  # 4 chunks fill the limit; the 5th crosses it


def test_gzip_bomb_never_inflates_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    limit = 100_000
    dec = BoundedDecoder("gzip", limit)
    with pytest.raises(_Fatal) as e:
        dec.feed(bomb)
    assert e.value.kind == "too_large"
    assert sum(len(p) for p in dec.parts) <= limit

    f, _ = make_fetcher(lambda r: html(bomb, **{"content-encoding": "gzip"}), max_bytes=limit)
    with pytest.raises(FetchFailed) as fe:
        fetch(f, "http://site.test/bomb")
    assert fe.value.kind == "too_large"


@pytest.mark.parametrize(
    "encode",
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as the RFC says
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
        ("identity", lambda b: b),
    ],
)
def test_gzip_and_both_deflate_flavours_decode(encode: tuple[str, Callable[[bytes], bytes]]) -> None:
    name, fn = encode
    f, _ = make_fetcher(lambda r: html(fn(PAGE), **{"content-encoding": name}))
    assert fetch(f, "http://site.test/x").content == PAGE


def test_unknown_content_encoding_and_corrupt_gzip_are_refused() -> None:
    f, _ = make_fetcher(lambda r: html(b"xx", **{"content-encoding": "br"}))
    with pytest.raises(FetchFailed, match="unsupported content-encoding"):
        fetch(f, "http://site.test/x")
    f, _ = make_fetcher(lambda r: html(b"\x1f\x8bnot gzip at all", **{"content-encoding": "gzip"}))
    with pytest.raises(FetchFailed, match="corrupt compressed body"):
        fetch(f, "http://site.test/x")


def test_a_cut_gzip_stream_is_a_truncation_and_retried() -> None:
    cut = gzip.compress(PAGE * 50)[:-30]
    f, _ = make_fetcher(lambda r: html(cut, **{"content-encoding": "gzip"}), retries=1)
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/x")
    assert e.value.kind == "truncated" and e.value.attempts == 2
    with pytest.raises(_Retry):
        d = BoundedDecoder("gzip", 10**6)
        d.feed(cut)
        d.finish()


# ------------------------------------------------------------------ redirects and headers


def redirecting(routes: dict[str, str]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        target = routes.get(str(request.url))
        if target is not None:
            return httpx.Response(302, headers={"location": target})
        return html()

    return handler


def test_redirects_within_allowed_hosts_are_followed() -> None:
    f, _ = make_fetcher(redirecting({"http://site.test/go/1": "/code/cpt4/1-a"}))
    resp = fetch(f, "http://site.test/go/1")
    assert resp.final_url == "http://site.test/code/cpt4/1-a" and resp.status == 200


@pytest.mark.parametrize(
    ("routes", "reason"),
    [
        ({"http://site.test/a": "http://evil.test/x"}, "redirect to host evil.test not allowed"),
        (
            {"http://site.test/a": "http://169.254.169.254/latest/"},
            "redirect to host 169.254.169.254 not allowed",
        ),
        ({"http://site.test/a": "/b", "http://site.test/b": "/a"}, "redirect loop"),
        ({"http://site.test/a": "file:///etc/passwd"}, "non-http"),
        (
            {f"http://site.test/{i}": f"/{i + 1}" for i in range(10)} | {"http://site.test/a": "/0"},
            "too many",
        ),
        ({"http://site.test/a": ""}, "without a Location"),
    ],
)
def test_bad_redirects_are_refused_without_being_requested(routes: dict[str, str], reason: str) -> None:
    seen: list[str] = []
    inner = redirecting(routes)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return inner(request)

    f, _ = make_fetcher(handler)
    with pytest.raises(FetchFailed) as e:
        fetch(f, "http://site.test/a")
    assert reason in e.value.reason and e.value.attempts == 1
    assert all(u.startswith("http://site.test/") for u in seen)
    assert len(seen) <= 6  # the first request and at most five redirects


def test_identifying_user_agent_and_bounded_encodings_are_sent() -> None:
    got: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request.headers)
        return html()

    f, _ = make_fetcher(handler)
    fetch(f, "http://site.test/x", headers={"If-None-Match": '"abc"'})
    assert got[0]["user-agent"].startswith("procpipe/")
    assert got[0]["accept-encoding"] == "gzip, deflate"
    assert got[0]["if-none-match"] == '"abc"'


def test_304_is_returned_as_not_modified() -> None:
    f, _ = make_fetcher(lambda r: httpx.Response(304))
    resp = fetch(f, "http://site.test/x", headers={"If-None-Match": '"a"'})
    assert resp.not_modified and resp.content == b""


def test_robots_and_sitemaps_can_ask_for_any_type() -> None:
    f, _ = make_fetcher(lambda r: respond(200, b"<x/>", **{"content-type": "application/xml"}))
    assert fetch(f, "http://site.test/s.xml", accept=None).content == b"<x/>"
    f, _ = make_fetcher(lambda r: respond(200, b"<x/>", **{"content-type": "application/xml"}))
    with pytest.raises(FetchFailed):
        fetch(f, "http://site.test/s.xml", accept=PAGE_TYPES)


# ------------------------------------------------------------------ rate limiting


def test_rate_limiter_never_exceeds_the_rate_in_any_one_second_window() -> None:
    async def no_sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    # a frozen clock: each caller's start is t0 + the wait its reservation gave it
    limiter = HostRateLimiter(20, jitter=0.1, margin=0.0, clock=lambda: 0.0, sleep=no_sleep)
    starts: list[float] = []

    async def one() -> None:
        starts.append(await limiter.acquire("a.test"))

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(120)))

    asyncio.run(go())
    starts.sort()
    assert all(b - a >= 1 / 20 - 1e-9 for a, b in zip(starts, starts[1:], strict=False))
    worst = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert worst <= 20
    assert starts[-1] - starts[0] < 120 / 20 * 1.11  # jitter slows by at most 10 %, no more


def test_crawl_delay_lengthens_the_interval_but_never_shortens_it() -> None:
    limiter = HostRateLimiter(2)
    limiter.set_delay("a.test", 5)
    limiter.set_delay("b.test", 0.1)
    assert limiter.interval("a.test") == 5 and limiter.interval("b.test") == 0.5


def test_a_pause_holds_one_host_and_not_the_others() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(100, jitter=0.0, margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.pause("slow.test", 10)
    t0 = clock()
    asyncio.run(limiter.acquire("fast.test"))
    assert clock() == t0
    asyncio.run(limiter.acquire("slow.test"))
    assert clock() >= t0 + 10


# ------------------------------------------------------------------ where requests may go


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("not an ip", False),
    ],
)
def test_only_global_unicast_addresses_are_public(ip: str, public: bool) -> None:
    assert is_public_address(ip) is public


def test_guard_refuses_a_non_start_host_that_resolves_to_loopback() -> None:
    with FixtureSite() as site:
        s = CrawlSettings(rate=1000, retries=0)

        async def go() -> tuple[Any, Any]:
            async with Fetcher(s, allowed_hosts={"127.0.0.1", "localhost"}, trusted_hosts={"127.0.0.1"}) as f:
                ok = await f.fetch(site.url(site.pages[0].path))
                try:
                    await f.fetch(f"http://localhost:{site.port}{site.pages[1].path}")
                except FetchFailed as e:
                    return ok, e
                return ok, None

        ok, refused = asyncio.run(go())
    assert ok.status == 200
    assert refused is not None and refused.kind == "private_address"
    assert "refused non-public address" in refused.reason
    assert [h.path for h in site.hits()] == [site.pages[0].path]  # localhost never reached the server


def test_a_crawl_delay_learnt_after_a_request_also_spaces_the_next_one() -> None:
    async def no_sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    limiter = HostRateLimiter(1000, jitter=0.0, margin=0.0, clock=lambda: 0.0, sleep=no_sleep)

    async def go() -> list[float]:
        first = await limiter.acquire("a.test")  # robots.txt, fetched before its Crawl-delay is known
        limiter.set_delay("a.test", 2.0)
        return [first, await limiter.acquire("a.test"), await limiter.acquire("a.test")]

    assert asyncio.run(go()) == [0.0, 2.0, 4.0]
