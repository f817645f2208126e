"""Crawl settings and the sources file (``sources.toml``).

Every knob of the scraper lives here, so behaviour is configured rather than hard-coded:
``CrawlSettings`` (politeness, retries, limits; filled from CLI flags or a source's table) and
``CrawlJob`` (what to crawl: sitemaps, URLs, allowed hosts, the source name). ``load_sources`` reads
a sources file::

    [defaults]              # optional: any CrawlSettings field
    rate = 1.0
    concurrency = 2

    [[sources]]
    name = "genhealth"
    sitemaps = ["https://genhealth.ai/sitemap.xml"]
    urls = []
    rate = 2.0              # optional per-source overrides of any CrawlSettings field
    allowed_hosts = ["genhealth.ai"]

Settings that change it: all of them; tests shrink ``timeout``, ``backoff_base`` and raise ``rate``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import UsageError

DEFAULT_USER_AGENT = "procpipe/0.1 (+https://github.com/procpipe/procpipe)"
MIB = 1024 * 1024


class CrawlSettings(BaseModel):
    """How politely and how hard to crawl. Defaults are the production values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_agent: str = DEFAULT_USER_AGENT
    rate: float = Field(
        default=1.0, gt=0, description="requests/second per host, never exceeded in any 1 s window"
    )
    concurrency: int = Field(default=2, ge=1, description="requests in flight at once (all hosts)")
    jitter: float = Field(
        default=0.1, ge=0, le=1, description="random extra delay, as a fraction of the interval"
    )
    rate_margin: float = Field(
        default=0.05, ge=0, description="safety margin on the interval, for send delays under load"
    )
    retries: int = Field(
        default=4, ge=0, description="retries after the first attempt (429, 5xx, timeouts, ...)"
    )
    backoff_base: float = Field(
        default=0.5, ge=0, description="first retry delay in seconds; doubles each retry"
    )
    backoff_max: float = Field(default=60.0, ge=0)
    max_retry_after: float = Field(
        default=600.0, ge=0, description="a longer Retry-After fails the URL instead"
    )
    timeout: float = Field(default=20.0, gt=0, description="connect/read/write timeout in seconds")
    total_timeout: float = Field(
        default=120.0, gt=0, description="whole-response deadline (slow-drip servers)"
    )
    max_bytes: int = Field(default=5 * MIB, gt=0, description="largest body accepted, after decompression")
    max_redirects: int = Field(default=5, ge=0)
    obey_robots: bool = True
    follow_similar: int = Field(default=0, ge=0, description="levels of Similar Codes links to follow")
    max_pages: int | None = Field(default=None, ge=1, description="most page URLs one crawl schedules")
    durable: bool = Field(default=True, description="fsync stored files before renaming them into place")

    @field_validator("user_agent")
    @classmethod
    def _ua_not_blank(cls, v: str) -> str:
        if not v.strip() or any(c in v for c in "\r\n"):
            raise ValueError("user agent must be one non-empty line")
        return v.strip()


class CrawlJob(BaseModel):
    """What one crawl covers. ``allowed_hosts`` adds to the hosts of the sitemaps and URLs."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(
        default=None, description="source name for the raw store; default: the URL's host"
    )
    sitemaps: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("sitemaps", "urls")
    @classmethod
    def _http_urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not u.lower().startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {u!r}")
        return v

    def start_hosts(self) -> set[str]:
        """Hostnames the user pointed at (lower-case, no port)."""
        from urllib.parse import urlsplit

        return {(urlsplit(u).hostname or "").lower() for u in [*self.sitemaps, *self.urls]} - {""}

    def hosts(self) -> set[str]:
        """Every host the crawl may request: start hosts plus the extra allowed hosts."""
        return self.start_hosts() | {h.lower().strip() for h in self.allowed_hosts if h.strip()}


class SourceConfig(BaseModel):
    """One ``[[sources]]`` table: a job plus optional setting overrides."""

    model_config = ConfigDict(extra="allow")

    name: str
    sitemaps: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    urls_file: str | None = None
    allowed_hosts: list[str] = Field(default_factory=list)

    def job(self, base_dir: Path | None = None) -> CrawlJob:
        """The crawl job; ``urls_file`` is read relative to the sources file."""
        urls = list(self.urls)
        if self.urls_file:
            p = Path(self.urls_file)
            if base_dir is not None and not p.is_absolute():
                p = base_dir / p
            urls += read_urls_file(p)
        return CrawlJob(source=self.name, sitemaps=self.sitemaps, urls=urls, allowed_hosts=self.allowed_hosts)

    def settings(self, defaults: CrawlSettings) -> CrawlSettings:
        """``defaults`` with this source's overrides applied (unknown keys are a usage error)."""
        overrides = dict(self.model_extra or {})
        try:
            return CrawlSettings.model_validate({**defaults.model_dump(), **overrides})
        except ValidationError as e:
            raise UsageError(f"source {self.name!r}: {_first_error(e)}") from None


class SourcesFile(BaseModel):
    """The parsed sources file."""

    model_config = ConfigDict(extra="forbid")

    defaults: CrawlSettings = CrawlSettings()
    sources: list[SourceConfig]
    base_dir: Path | None = None

    def jobs(self) -> list[tuple[CrawlJob, CrawlSettings]]:
        """Each source as (job, settings), in file order."""
        return [(s.job(self.base_dir), s.settings(self.defaults)) for s in self.sources]


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "value"
    return f"{where}: {err.get('msg', 'invalid')}"


def read_urls_file(path: Path) -> list[str]:
    """URLs one per line; blank lines and ``#`` comments ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read URLs file {path}: {e.strerror or e}") from None
    urls = [ln.strip() for ln in text.splitlines()]
    return [u for u in urls if u and not u.startswith("#")]


def load_sources(path: str | Path) -> SourcesFile:
    """Read and validate a sources file; any problem is a ``UsageError`` naming the field."""
    p = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read {p}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{p} is not valid TOML: {e}") from None
    if not data.get("sources"):
        raise UsageError(f"{p}: no [[sources]] table")
    try:
        cfg = SourcesFile.model_validate({**data, "base_dir": p.parent})
        for s in cfg.sources:
            s.job(cfg.base_dir)
            s.settings(cfg.defaults)
    except ValidationError as e:
        raise UsageError(f"{p}: {_first_error(e)}") from None
    names = [s.name for s in cfg.sources]
    if len(set(names)) != len(names):
        raise UsageError(f"{p}: source names must be unique")
    return cfg
