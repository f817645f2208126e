"""Prefect flows of the scraper: ``scrape`` (one crawl job) and ``refresh`` (every source, then process).

Thin by design: the work is ``pipeline.sources.crawl.run_crawl``; the flows add a task per crawl, a
run artifact (fetched / not modified / unchanged / disallowed / failed, the failures, the slowest
hosts) and, for ``refresh``, the call to the processing flow ``pipeline.flows.process`` (imported when
needed, so scraping does not depend on the processing side being importable).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.sources.config import CrawlJob, CrawlSettings, load_sources
from pipeline.sources.crawl import CrawlResult, run_crawl


def crawl_markdown(results: dict[str, dict[str, Any]], max_failures: int = 25) -> str:
    """The run artifact: one row per source, then failures and the slowest hosts."""
    lines = [
        "# Scrape",
        "",
        "| source | fetched | not modified | unchanged | disallowed | failed | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    failures: list[tuple[str, dict[str, Any]]] = []
    hosts: list[dict[str, Any]] = []
    for name, r in results.items():
        s = r["summary"]
        lines.append(
            f"| {name} | {s['fetched']} | {s['not_modified']} | {s['unchanged']} | {s['disallowed']} "
            f"| {len(s['failed'])} | {r.get('elapsed_s', 0):.1f} |"
        )
        failures += [(name, f) for f in s["failed"]]
        hosts += r.get("slowest_hosts", [])
    if failures:
        lines += ["", "## Failed", "", "| source | url | reason | attempts |", "|---|---|---|---:|"]
        for name, f in failures[:max_failures]:
            reason = str(f["reason"]).replace("|", "\\|")
            lines.append(f"| {name} | {f['url']} | {reason} | {f['attempts']} |")
        if len(failures) > max_failures:
            lines.append(f"\n... and {len(failures) - max_failures} more")
    if hosts:
        lines += ["", "## Slowest hosts", "", "| host | requests | mean s | max s |", "|---|---:|---:|---:|"]
        for h in sorted(hosts, key=lambda h: h["mean_s"], reverse=True)[:5]:
            lines.append(f"| {h['host']} | {h['requests']} | {h['mean_s']:.3f} | {h['max_s']:.3f} |")
    return "\n".join(lines) + "\n"


def _as_dict(result: CrawlResult) -> dict[str, Any]:
    d = dataclasses.asdict(result)
    d["summary"] = result.summary()
    return d


@task(name="crawl", cache_policy=NO_CACHE, persist_result=False)
def crawl_task(job: dict[str, Any], settings: dict[str, Any], raw_dir: str) -> dict[str, Any]:
    """One crawl job into ``raw_dir``; returns the CrawlResult as a dict plus its ``summary``."""
    result = run_crawl(CrawlJob.model_validate(job), CrawlSettings.model_validate(settings), raw_dir)
    return _as_dict(result)


@flow(name="scrape", log_prints=False)
def scrape(
    sitemaps: list[str] | None = None,
    urls: list[str] | None = None,
    raw_dir: str = "raw",
    source: str | None = None,
    allowed_hosts: list[str] | None = None,
    settings: dict[str, Any] | None = None,
    artifact: bool = True,
) -> dict[str, Any]:
    """Crawl the given sitemaps/URLs into ``raw_dir``; ``settings`` are ``CrawlSettings`` fields."""
    log = get_run_logger()
    job = CrawlJob(source=source, sitemaps=sitemaps or [], urls=urls or [], allowed_hosts=allowed_hosts or [])
    crawl_settings = CrawlSettings.model_validate(settings or {})
    out = crawl_task(job.model_dump(), crawl_settings.model_dump(), raw_dir)
    s = out["summary"]
    log.info(
        "scrape %s: fetched %d, not modified %d, unchanged %d, disallowed %d, failed %d",
        source or "(by host)", s["fetched"], s["not_modified"], s["unchanged"], s["disallowed"],
        len(s["failed"]),
    )  # fmt: skip
    if artifact:
        create_markdown_artifact(
            key="scrape-summary", markdown=crawl_markdown({source or "(by host)": out}),
            description="pages fetched, not modified, unchanged, disallowed and failed",
        )  # fmt: skip
    return out


@flow(name="refresh", log_prints=False)
def refresh(
    config: str = "sources.toml",
    raw_dir: str = "raw",
    out_dir: str = "processed",
    run_process: bool = True,
) -> dict[str, Any]:
    """Scrape every source in ``config`` into ``raw_dir``, then process ``raw_dir`` into ``out_dir``."""
    log = get_run_logger()
    cfg = load_sources(Path(config))
    results: dict[str, dict[str, Any]] = {}
    for job, settings in cfg.jobs():
        name = job.source or "(unnamed)"
        results[name] = scrape(
            sitemaps=job.sitemaps, urls=job.urls, raw_dir=raw_dir, source=job.source,
            allowed_hosts=job.allowed_hosts, settings=settings.model_dump(), artifact=False,
        )  # fmt: skip
    create_markdown_artifact(
        key="refresh-scrape", markdown=crawl_markdown(results),
        description="per source: fetched, not modified, unchanged, disallowed, failed; slowest hosts",
    )  # fmt: skip
    processed: Any = None
    if run_process:
        from pipeline.flows import process

        log.info("refresh: processing %s into %s", raw_dir, out_dir)
        processed = process(raw_dir, out_dir)
    return {"sources": results, "processed": processed}
