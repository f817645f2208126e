"""The crawl loop: discover URLs, fetch them politely with N workers, store them, journal progress.

Discovery: the job's URLs, then its sitemaps (read while pages are already being fetched), then, when
``follow_similar`` > 0, the links under a page's "Similar Codes" heading (any heading the vocabulary
maps to ``similar_codes``), that many levels deep. ``max_pages`` caps how many page URLs one crawl
schedules. Links to hosts outside the job's hosts are dropped (counted as ``offsite/filtered``);
start URLs or sitemap entries on such hosts are reported as failed.

Per URL, in order: allowed host, robots.txt, resume (a URL this run already stored whose file still
matches is skipped), conditional GET from the stored sidecar, fetch, store. Outcomes:
``fetched`` (new or changed, written), ``not_modified`` (304), ``unchanged`` (same sha256, nothing
written), ``disallowed`` (robots), or ``failed`` (with reason and attempts).

Settings that change it: every ``CrawlSettings`` field; ``concurrency`` is the number of workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
import lxml.html
from lxml import etree

from pipeline.normalize.vocabulary import heading_key
from pipeline.sources.config import CrawlJob, CrawlSettings
from pipeline.sources.fetch import Fetcher, FetchFailed, Stats, host_of
from pipeline.sources.robots import RobotsCache
from pipeline.sources.sitemap import iter_sitemap_urls
from pipeline.sources.store import CrawlState, RawStore, StoredPage

T = TypeVar("T")
#: Progress callback: (event, url, scheduled_so_far). Events: scheduled, fetched, not_modified,
#: unchanged, disallowed, failed, skipped.
ProgressHook = Callable[[str, str, int], None]
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


@dataclass
class CrawlResult:
    """What a crawl did. ``summary()`` is the ``--json`` object."""

    fetched: int = 0
    not_modified: int = 0
    unchanged: int = 0
    disallowed: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    resumed: bool = False
    completed: bool = False
    elapsed_s: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)
    slowest_hosts: list[dict[str, Any]] = field(default_factory=list)
    state_path: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "fetched": self.fetched,
            "not_modified": self.not_modified,
            "unchanged": self.unchanged,
            "disallowed": self.disallowed,
            "failed": list(self.failed),
        }


def similar_links(content: bytes, base_url: str) -> list[str]:
    """Absolute URLs of the links under the page's Similar Codes heading (until the next heading)."""
    try:
        root = lxml.html.document_fromstring(content)
    except (etree.ParserError, ValueError):
        return []
    links: list[str] = []
    level: int | None = None
    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        n = _HEADINGS.get(tag.lower())
        if n is not None:
            text = " ".join(el.text_content().split())
            if heading_key(text) == "similar_codes":
                level = n
                continue
            if level is not None and n <= level:
                break
        elif level is not None and tag.lower() == "a":
            href = (el.get("href") or "").strip()
            if href and not href.startswith(("#", "javascript:", "mailto:")):
                url = urljoin(base_url, href).split("#", 1)[0]
                if urlsplit(url).scheme in ("http", "https") and url not in links:
                    links.append(url)
    return links


def job_fingerprint(job: CrawlJob, settings: CrawlSettings) -> str:
    """Identifies a crawl job for resuming: same sources and discovery settings, same job."""
    data = {
        "source": job.source,
        "sitemaps": sorted(job.sitemaps),
        "urls": sorted(job.urls),
        "follow_similar": settings.follow_similar,
        "max_pages": settings.max_pages,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def state_path_for(raw_dir: Path, job: CrawlJob, settings: CrawlSettings) -> Path:
    """The job's journal: one per source name, else one per set of start URLs."""
    key = job.source or f"job-{job_fingerprint(job, settings)}"
    return CrawlState.default_path(raw_dir, key)


class Crawler:
    """One crawl of one job; use ``await Crawler(...).run()`` or ``crawl()``/``run_crawl()``."""

    def __init__(
        self,
        job: CrawlJob,
        settings: CrawlSettings,
        raw_dir: str | Path,
        *,
        state_path: str | Path | None = None,
        progress: ProgressHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.job = job
        self.settings = settings
        self.raw_dir = Path(raw_dir)
        self.store = RawStore(self.raw_dir, durable=settings.durable)
        journal = Path(state_path) if state_path else state_path_for(self.raw_dir, job, settings)
        self.state = CrawlState(journal)
        self.progress = progress
        self.stats = Stats()
        self.result = CrawlResult(state_path=str(self.state.path))
        self.fetcher = Fetcher(
            settings,
            allowed_hosts=job.hosts(),
            trusted_hosts=job.start_hosts(),
            stats=self.stats,
            transport=transport,
        )
        self.robots = RobotsCache(self.fetcher, obey=settings.obey_robots)
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._seen: set[str] = set()
        self._scheduled = 0

    # ---------------------------------------------------------------- bookkeeping

    def _emit(self, event: str, url: str) -> None:
        if self.progress is not None:
            self.progress(event, url, self._scheduled)

    def _fail(self, url: str, reason: str, attempts: int) -> None:
        self.result.failed.append({"url": url, "reason": reason, "attempts": attempts})
        self.stats.inc("outcome/failed")
        self.state.record(url, "failed")
        self._emit("failed", url)

    def _schedule(self, url: str, depth: int, *, explicit: bool) -> None:
        url = url.strip().split("#", 1)[0]
        if not url or url in self._seen:
            self.stats.inc("scheduler/duplicate")
            return
        if not self.fetcher.host_allowed(url):
            if explicit:
                self._seen.add(url)
                self._fail(url, f"host {host_of(url) or '?'} not allowed", 0)
            else:
                self.stats.inc("offsite/filtered")
            return
        if self.settings.max_pages is not None and self._scheduled >= self.settings.max_pages:
            self.stats.inc("scheduler/over_max_pages")
            return
        self._seen.add(url)
        self._scheduled += 1
        self.stats.inc("scheduler/enqueued")
        self._queue.put_nowait((url, depth))
        self._emit("scheduled", url)

    # ---------------------------------------------------------------- the loop

    async def run(self) -> CrawlResult:
        started = time.monotonic()
        self.result.resumed = self.state.open(job_fingerprint(self.job, self.settings))
        try:
            async with self.fetcher:
                workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.concurrency)]
                try:
                    await self._discover()
                    await self._queue.join()
                finally:
                    for w in workers:
                        w.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
            self.state.complete()
            self.result.completed = True
        finally:
            self.state.close()
            self.result.elapsed_s = round(time.monotonic() - started, 3)
            self.result.stats = self.stats.to_dict()
            self.result.slowest_hosts = self.stats.slowest_hosts()
        return self.result

    async def _discover(self) -> None:
        for url in self.job.urls:
            self._schedule(url, 0, explicit=True)
        if self.job.sitemaps:
            async for url in iter_sitemap_urls(
                self.job.sitemaps, self.fetcher, self.robots, on_failure=self._fail
            ):
                self._schedule(url, 0, explicit=True)

    async def _worker(self) -> None:
        while True:
            url, depth = await self._queue.get()
            try:
                await self._visit(url, depth)
            except Exception as e:  # noqa: BLE001 - one bad URL must not end the crawl
                self.stats.inc("error/unexpected")
                self._fail(url, f"internal error: {type(e).__name__}: {e}", 0)
            finally:
                self._queue.task_done()

    async def _visit(self, url: str, depth: int) -> None:
        ok, why = await self.robots.allowed(url)
        if not ok:
            self.result.disallowed += 1
            self.stats.inc("outcome/disallowed")
            self.state.record(url, "disallowed")
            self._emit("disallowed", url)
            return
        source = self.job.source
        if self.result.resumed:
            prev = await asyncio.to_thread(self._stored_by_this_run, url)
            if prev is not None:
                self.result.skipped += 1
                self.stats.inc("resume/skipped")
                self._emit("skipped", url)
                if depth < self.settings.follow_similar:
                    content = await asyncio.to_thread(prev.path.read_bytes)
                    await self._follow(content, prev.meta.get("final_url") or url, depth)
                return
        stored: StoredPage | None = await asyncio.to_thread(self.store.lookup, url, source)
        headers = {}
        if stored is not None and await asyncio.to_thread(stored.intact):
            headers = stored.conditional_headers()
            if headers:
                self.stats.inc("conditional/sent")
        else:
            stored = None
        try:
            resp = await self.fetcher.fetch(url, headers=headers)
        except FetchFailed as e:
            self._fail(url, e.reason, e.attempts)
            return
        if resp.not_modified:
            if stored is None:
                self._fail(url, "HTTP 304 for a page that is not stored", resp.attempts)
                return
            self.result.not_modified += 1
            self.stats.inc("outcome/not_modified")
            rel = self.store.relative(stored.path)
            self.state.record(url, "not_modified", path=rel, sha256=stored.sha256)
            self._emit("not_modified", url)
            await self._follow(await asyncio.to_thread(stored.path.read_bytes), resp.final_url, depth)
            return
        outcome, path = await asyncio.to_thread(
            self.store.save,
            url=url,
            final_url=resp.final_url,
            source=source,
            status=resp.status,
            content=resp.content,
            content_type=resp.content_type,
            etag=resp.headers.get("etag"),
            last_modified=resp.headers.get("last-modified"),
        )
        if outcome == "fetched":
            self.result.fetched += 1
        else:
            self.result.unchanged += 1
        self.stats.inc(f"outcome/{outcome}")
        sha = hashlib.sha256(resp.content).hexdigest()
        self.state.record(url, outcome, path=self.store.relative(path), sha256=sha)
        self._emit(outcome, url)
        await self._follow(resp.content, resp.final_url, depth)

    def _stored_by_this_run(self, url: str) -> StoredPage | None:
        """The intact stored page of ``url`` if the interrupted run being resumed already stored it:
        journalled, or written after the run began (a kill can land between the write and the journal)."""
        done = self.state.stored(url)
        prev = self.store.lookup(url, self.job.source, done.get("path") if done else None)
        if prev is None or not prev.intact():
            return None
        if done is not None:
            return prev if prev.sha256 == done.get("sha256") else None
        fetched_at = prev.meta.get("fetched_at")
        if isinstance(fetched_at, str) and self.state.started and fetched_at >= self.state.started:
            self.stats.inc("resume/unjournalled")
            return prev
        return None

    async def _follow(self, content: bytes, base_url: str, depth: int) -> None:
        if depth >= self.settings.follow_similar:
            return
        links = await asyncio.to_thread(similar_links, content, base_url)
        self.stats.inc("similar/links", len(links))
        for link in links:
            self._schedule(link, depth + 1, explicit=False)


async def crawl(
    job: CrawlJob,
    settings: CrawlSettings,
    raw_dir: str | Path,
    *,
    state_path: str | Path | None = None,
    progress: ProgressHook | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CrawlResult:
    """Crawl ``job`` into ``raw_dir``; see the module docstring."""
    crawler = Crawler(job, settings, raw_dir, state_path=state_path, progress=progress, transport=transport)
    return await crawler.run()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when an event loop is already running in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="procpipe-crawl")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def run_crawl(
    job: CrawlJob,
    settings: CrawlSettings,
    raw_dir: str | Path,
    *,
    state_path: str | Path | None = None,
    progress: ProgressHook | None = None,
) -> CrawlResult:
    """Blocking ``crawl``."""
    return run_sync(crawl(job, settings, raw_dir, state_path=state_path, progress=progress))
