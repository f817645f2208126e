"""The polite HTTP client: one GET that is rate limited, retried, bounded and kept on allowed hosts.

``Fetcher.fetch(url)`` returns a ``Response`` or raises ``FetchFailed(reason, attempts)``. Around each
request it applies, in this order:

- **rate** (``HostRateLimiter``): per host, request starts are spaced by ``1/rate`` (or the robots
  Crawl-delay when larger) plus ``rate_margin`` and random ``jitter``, with burst 1, so no one-second
  window ever holds more than ``rate`` requests. A ``Retry-After`` pauses the whole host.
- **where** (``GuardedTransport``): redirects are followed by hand, at most ``max_redirects``, only to
  http(s) URLs on the allowed hosts, and loops are refused. At connect time every host except the start
  hosts must resolve only to public addresses (no private, loopback, link-local, reserved), and the
  connection goes to the address that was checked, so DNS rebinding cannot sneak past.
- **faults**: 408/429/5xx, timeouts (``timeout`` per read, ``total_timeout`` per response), connection
  errors and truncated bodies are retried ``retries`` times with exponential backoff (``backoff_base``,
  ``backoff_max``, equal jitter); a ``Retry-After`` (seconds or HTTP date) replaces the backoff, and
  one longer than ``max_retry_after`` fails the URL at once. Other 4xx, redirect refusals, content
  types and oversize bodies fail at once.
- **bodies**: the Content-Type must be one the caller accepts (checked before the body is read);
  ``max_bytes`` is enforced on the wire and after gzip/deflate decoding, which is done here in bounded
  steps so a decompression bomb never inflates past the limit; a body shorter than its Content-Length
  (or a cut gzip stream) is a truncation.

Every decision is counted in ``Stats``.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import random
import socket
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

from pipeline.sources.config import CrawlSettings

PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown", "text/x-markdown")
SITEMAP_TYPES = (
    "application/xml",
    "text/xml",
    "application/x-gzip",
    "application/gzip",
    "application/octet-stream",
    "text/plain",
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- stats


class Stats:
    """Counters for every decision (Scrapy-style keys such as ``retry/reason/429``) and host timings."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.host_times: dict[str, list[float]] = {}

    def inc(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def observe(self, host: str, seconds: float) -> None:
        """One response's latency (request sent to body read) for ``host``."""
        self.host_times.setdefault(host, []).append(seconds)

    def slowest_hosts(self, n: int = 5) -> list[dict[str, Any]]:
        """Hosts by mean latency, slowest first: host, requests, mean_s, max_s."""
        rows: list[dict[str, Any]] = [
            {
                "host": h,
                "requests": len(ts),
                "mean_s": round(sum(ts) / len(ts), 4),
                "max_s": round(max(ts), 4),
            }
            for h, ts in self.host_times.items()
            if ts
        ]
        return sorted(rows, key=lambda r: r["mean_s"], reverse=True)[:n]

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


# --------------------------------------------------------------------------- rate limiting


@dataclass
class _HostSlot:
    interval: float
    next_at: float = 0.0
    blocked_until: float = 0.0
    last_start: float | None = None


class HostRateLimiter:
    """Per-host spacing of request starts: burst 1, ``1/rate`` apart (or the Crawl-delay), plus jitter.

    Reservations are made without awaiting, so concurrent callers queue in order and the spacing holds
    for every pair of consecutive requests to a host.
    """

    def __init__(
        self,
        rate: float,
        *,
        jitter: float = 0.1,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        stats: Stats | None = None,
    ) -> None:
        self.base_interval = 1.0 / rate
        self.jitter = jitter
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._hosts: dict[str, _HostSlot] = {}
        self.stats = stats or Stats()

    def _slot(self, host: str) -> _HostSlot:
        st = self._hosts.get(host)
        if st is None:
            st = self._hosts[host] = _HostSlot(self.base_interval)
        return st

    def interval(self, host: str) -> float:
        return self._slot(host).interval

    def set_delay(self, host: str, seconds: float | None) -> None:
        """Honour a robots.txt Crawl-delay when it is longer than ``1/rate``."""
        if seconds and seconds > 0:
            st = self._slot(host)
            if seconds > st.interval:
                self.stats.inc("rate/crawl_delay_applied")
                st.interval = float(seconds)
                if st.last_start is not None:  # the slot already handed out used the old interval
                    st.next_at = max(st.next_at, st.last_start + st.interval * (1.0 + self.margin))

    def pause(self, host: str, seconds: float) -> None:
        """Hold every request to ``host`` for ``seconds`` (a Retry-After)."""
        st = self._slot(host)
        st.blocked_until = max(st.blocked_until, self._clock() + seconds)
        self.stats.inc("rate/host_paused")

    async def acquire(self, host: str) -> float:
        """Wait for this host's next free slot; returns the seconds waited."""
        waited = 0.0
        while True:
            st = self._slot(host)
            now = self._clock()
            at = max(now, st.next_at, st.blocked_until)
            st.next_at = at + st.interval * (1.0 + self.margin) + st.interval * self.jitter * self._rng()
            st.last_start = at
            if at > now:
                await self._sleep(at - now)
                waited += at - now
            if self._clock() >= st.blocked_until:
                if waited:
                    self.stats.inc("rate/waits")
                return waited


# --------------------------------------------------------------------------- where requests may go


class BlockedAddress(Exception):
    """A connection to a non-public address that the policy refuses."""


def is_public_address(ip: str) -> bool:
    """True for globally routable unicast addresses only."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return bool(addr.is_global) and not addr.is_multicast


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses non-public addresses, and connects to the checked address.

    Hosts in ``trusted`` (the crawl's start hosts) are connected to as given: a user who points the
    crawler at 127.0.0.1 means it; a redirect or a link that leads there does not.
    """

    def __init__(self, trusted: Iterable[str], inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.trusted = {h.lower() for h in trusted}
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host.lower().strip("[]") in self.trusted:
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from e
        addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
        bad = [a for a in addrs if not is_public_address(a)]
        if bad or not addrs:
            raise BlockedAddress(f"refused non-public address {bad[0] if bad else '?'} for host {host}")
        error: Exception | None = None
        for ip in addrs:
            try:
                return await self.inner.connect_tcp(ip, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as e:
                error = e
        assert error is not None
        raise error

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with its connection pool built on ``GuardedBackend``."""

    def __init__(self, trusted: Iterable[str], *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        # httpx has no network_backend option, so build the pool its __init__ would build, with ours.
        # handle_async_request, aclose and the context manager use only self._pool.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(trusted),
        )


def host_of(url: str | httpx.URL) -> str:
    """Lower-case hostname without port."""
    return (urlsplit(str(url)).hostname or "").lower()


# --------------------------------------------------------------------------- bodies


class _Fatal(Exception):
    """Fails the URL now."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class _Retry(Exception):
    """Worth another attempt."""

    def __init__(self, reason: str, kind: str, *, retry_after: float | None = None, host: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.retry_after = retry_after
        self.host = host


class BoundedDecoder:
    """gzip/deflate/identity decoding that never produces more than ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        enc = encoding.strip().lower()
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self._z: Any = None
        self._deflate_pending = False
        if enc in ("", "identity"):
            pass
        elif enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._deflate_pending = True  # zlib-wrapped or raw: decided by the first two bytes
        else:
            raise _Fatal(f"unsupported content-encoding {encoding!r}", "content_encoding")

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _Fatal(f"body larger than {self.limit} bytes", "too_large")
        if data:
            self.parts.append(data)

    def feed(self, data: bytes) -> None:
        if self._deflate_pending and data:
            zlib_header = len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._z = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
            self._deflate_pending = False
        if self._z is None:
            self._add(data)
            return
        chunk = data
        try:
            while chunk:
                out = self._z.decompress(chunk, self.limit - self.size + 1)
                self._add(out)
                chunk = self._z.unconsumed_tail
        except zlib.error as e:
            raise _Fatal(f"corrupt compressed body: {e}", "bad_encoding") from None

    def finish(self) -> bytes:
        if self._z is not None:
            try:
                self._add(self._z.flush())
            except zlib.error as e:
                raise _Fatal(f"corrupt compressed body: {e}", "bad_encoding") from None
            if not self._z.eof:
                raise _Retry("truncated body (compressed stream cut short)", "truncated")
        return b"".join(self.parts)


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress a whole gzip file (a ``.xml.gz`` sitemap) without exceeding ``limit`` bytes."""
    dec = BoundedDecoder("gzip", limit)
    dec.feed(data)
    try:
        return dec.finish()
    except _Retry as e:
        raise _Fatal(e.reason, "truncated") from None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    v = value.strip()
    try:
        secs = float(v)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = (when - (now or datetime.now(UTC))).total_seconds()
    if secs != secs:  # NaN
        return None
    return max(0.0, secs)


# --------------------------------------------------------------------------- the client


@dataclass
class Response:
    """A successful fetch (2xx with a body, or 304)."""

    url: str
    final_url: str
    status: int
    headers: httpx.Headers
    content: bytes
    attempts: int
    elapsed: float
    content_type: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class FetchFailed(Exception):
    """A URL that could not be fetched; ``reason`` is one line a person can act on."""

    def __init__(self, url: str, reason: str, attempts: int, kind: str = "error") -> None:
        super().__init__(url, reason, attempts, kind)
        self.url = url
        self.reason = reason
        self.attempts = attempts
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.url}: {self.reason} (after {self.attempts} attempt{'s' * (self.attempts != 1)})"


class Fetcher:
    """GET with politeness and fault handling (see the module docstring). Use as an async context."""

    def __init__(
        self,
        settings: CrawlSettings,
        *,
        allowed_hosts: Iterable[str] | None,
        trusted_hosts: Iterable[str] = (),
        stats: Stats | None = None,
        limiter: HostRateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.stats = stats or Stats()
        self.limiter = limiter or HostRateLimiter(
            settings.rate, jitter=settings.jitter, margin=settings.rate_margin, stats=self.stats
        )
        self._sleep = sleep
        self._rng = rng
        limits = httpx.Limits(max_connections=max(4, settings.concurrency * 2))
        self.client = httpx.AsyncClient(
            transport=transport or GuardedTransport(trusted_hosts, limits=limits),
            follow_redirects=False,
            timeout=httpx.Timeout(settings.timeout),
            trust_env=False,
            headers={
                "User-Agent": settings.user_agent,
                "Accept-Encoding": "gzip, deflate",
                "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1",
            },
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    def host_allowed(self, url: str) -> bool:
        host = host_of(url)
        return bool(host) and (self.allowed is None or host in self.allowed)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential, capped, equal jitter."""
        d = min(self.settings.backoff_max, self.settings.backoff_base * (2 ** (attempt - 1)))
        return d / 2 + d / 2 * self._rng()

    async def fetch(
        self,
        url: str,
        *,
        accept: tuple[str, ...] | None = PAGE_TYPES,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        """GET ``url`` following the policy; raises ``FetchFailed`` when it cannot."""
        attempt = 0
        while True:
            attempt += 1
            try:
                limit = max_bytes or self.settings.max_bytes
                return await self._once(url, attempt, accept, headers or {}, limit)
            except _Fatal as e:
                self.stats.inc(f"failed/{e.kind}")
                raise FetchFailed(url, e.reason, attempt, e.kind) from None
            except _Retry as e:
                if e.retry_after is not None and e.retry_after > self.settings.max_retry_after:
                    self.stats.inc("failed/retry_after_too_long")
                    why = f"{e.reason}; Retry-After {e.retry_after:.0f}s exceeds the limit"
                    raise FetchFailed(url, why, attempt, e.kind) from None
                if attempt > self.settings.retries:
                    self.stats.inc(f"failed/{e.kind}")
                    self.stats.inc("retry/max_reached")
                    raise FetchFailed(url, e.reason, attempt, e.kind) from None
                self.stats.inc("retry/count")
                self.stats.inc(f"retry/reason/{e.kind}")
                if e.retry_after is not None:
                    self.stats.inc("retry/retry_after_honoured")
                    self.limiter.pause(e.host or host_of(url), e.retry_after)
                    delay = e.retry_after
                else:
                    delay = self.backoff(attempt)
                await self._sleep(delay)

    async def _once(
        self, url: str, attempt: int, accept: tuple[str, ...] | None, headers: dict[str, str], limit: int
    ) -> Response:
        current = url
        seen = {url.split("#", 1)[0]}
        for hop in range(self.settings.max_redirects + 1):
            scheme = urlsplit(current).scheme.lower()
            if scheme not in ("http", "https"):
                raise _Fatal(f"refused non-http URL {current}", "scheme")
            host = host_of(current)
            if not self.host_allowed(current):
                self.stats.inc("refused/offsite")
                what = "redirect to" if hop else "URL on"
                raise _Fatal(f"{what} host {host or '?'} not allowed", "offsite")
            await self.limiter.acquire(host)
            self.stats.inc("request_count")
            self.stats.inc(f"request_count/{host}")
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.settings.total_timeout):
                    request = self.client.build_request("GET", current, headers=headers)
                    resp = await self.client.send(request, stream=True)
                    try:
                        status = resp.status_code
                        self.stats.inc(f"response_status_count/{status}")
                        if status in REDIRECT_STATUSES:
                            current = self._next_hop(resp, current, hop, seen)
                            continue
                        if status in RETRY_STATUSES:
                            ra = parse_retry_after(resp.headers.get("retry-after"))
                            raise _Retry(f"HTTP {status}", str(status), retry_after=ra, host=host)
                        if status == 304:
                            self.stats.observe(host, time.monotonic() - started)
                            return Response(
                                url, current, 304, resp.headers, b"", attempt, time.monotonic() - started
                            )
                        if not 200 <= status < 300:
                            raise _Fatal(f"HTTP {status}", f"http_{status}")
                        ctype = resp.headers.get("content-type")
                        mt = media_type(ctype)
                        if accept is not None and mt and mt not in accept:
                            self.stats.inc("refused/content_type")
                            raise _Fatal(f"unsupported content type {mt}", "content_type")
                        body = await self._read_body(resp, limit)
                        if accept is not None and not mt and b"\x00" in body[:1024]:
                            self.stats.inc("refused/content_type")
                            raise _Fatal("binary body without a content type", "content_type")
                        elapsed = time.monotonic() - started
                        self.stats.observe(host, elapsed)
                        self.stats.inc("response_bytes", len(body))
                        return Response(url, current, status, resp.headers, body, attempt, elapsed, ctype)
                    finally:
                        await resp.aclose()
            except TimeoutError:
                raise _Retry(
                    f"timed out (no complete response in {self.settings.total_timeout:g}s)",
                    "timeout",
                    host=host,
                ) from None
            except httpx.TimeoutException as e:
                raise _Retry(f"timed out ({type(e).__name__})", "timeout", host=host) from None
            except httpx.RemoteProtocolError as e:
                raise _Retry(f"protocol error: {e}", "protocol", host=host) from None
            except (httpx.NetworkError, httpx.ProtocolError) as e:
                raise _Retry(f"connection error: {e or type(e).__name__}", "connection", host=host) from None
            except BlockedAddress as e:
                self.stats.inc("refused/private_address")
                raise _Fatal(str(e), "private_address") from None
            except (httpx.InvalidURL, httpx.TransportError) as e:
                raise _Fatal(f"cannot request {current[:100]}: {e}", "invalid_url") from None
        raise _Fatal(f"too many redirects (more than {self.settings.max_redirects})", "redirects")

    def _next_hop(self, resp: httpx.Response, current: str, hop: int, seen: set[str]) -> str:
        self.stats.inc("redirect/count")
        location = resp.headers.get("location")
        if not location:
            raise _Fatal(f"HTTP {resp.status_code} redirect without a Location", "redirects")
        try:
            nxt = str(httpx.URL(current).join(location.strip())).split("#", 1)[0]
        except (httpx.InvalidURL, ValueError):
            raise _Fatal(f"redirect to an invalid URL {location[:100]!r}", "redirects") from None
        if nxt in seen:
            self.stats.inc("redirect/loop")
            raise _Fatal(f"redirect loop at {nxt}", "redirects")
        if hop >= self.settings.max_redirects:
            raise _Fatal(f"too many redirects (more than {self.settings.max_redirects})", "redirects")
        if urlsplit(nxt).scheme.lower() not in ("http", "https"):
            raise _Fatal(f"refused redirect to non-http URL {nxt[:100]}", "scheme")
        if not self.host_allowed(nxt):
            self.stats.inc("refused/offsite_redirect")
            raise _Fatal(f"redirect to host {host_of(nxt) or '?'} not allowed", "offsite")
        seen.add(nxt)
        return nxt

    async def _read_body(self, resp: httpx.Response, limit: int) -> bytes:
        declared = resp.headers.get("content-length")
        expected: int | None = None
        if declared is not None:
            try:
                expected = int(declared)
            except ValueError:
                expected = None
        if expected is not None and expected > limit:
            self.stats.inc("refused/too_large")
            raise _Fatal(f"body larger than {limit} bytes (Content-Length {expected})", "too_large")
        decoder = BoundedDecoder(resp.headers.get("content-encoding", ""), limit)
        received = 0
        try:
            async for chunk in resp.aiter_raw():
                received += len(chunk)
                if received > limit:
                    raise _Fatal(f"body larger than {limit} bytes", "too_large")
                decoder.feed(chunk)
        except httpx.RemoteProtocolError:
            if expected is not None and received < expected:
                self.stats.inc("truncated")
                raise _Retry(f"truncated body ({received} of {expected} bytes)", "truncated") from None
            raise
        except _Fatal as e:
            if e.kind == "too_large":
                self.stats.inc("refused/too_large")
            raise
        if expected is not None and received != expected:
            self.stats.inc("truncated")
            raise _Retry(f"truncated body ({received} of {expected} bytes)", "truncated")
        try:
            return decoder.finish()
        except _Retry:
            self.stats.inc("truncated")
            raise
