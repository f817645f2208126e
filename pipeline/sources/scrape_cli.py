"""CLI commands of the scraper: ``procpipe scrape`` and ``procpipe refresh``.

``add_commands(subparsers)`` registers both on the main parser; each sets ``func`` (and ``handler``)
to a function taking the parsed ``argparse.Namespace`` and returning the exit code: 0 the crawl
completed (failures are listed, not fatal), 1 it could not run (raw folder not writable, another
crawl holds the journal, ...), 2 usage (no source given, a bad value), 130 interrupted (rerun the
same command to resume). ``python -m pipeline.sources.scrape_cli scrape ...`` runs them standalone.

``scrape --json`` prints exactly ``{"fetched", "not_modified", "unchanged", "disallowed", "failed"}``
on stdout; without it a progress bar goes to stderr and a short summary to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.errors import UsageError
from pipeline.sources.config import DEFAULT_USER_AGENT, MIB, CrawlJob, CrawlSettings, read_urls_file

Handler = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def _settings_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("politeness and limits")
    g.add_argument("--rate", type=float, default=None, help="requests per second per host (default 1)")
    g.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 2)")
    g.add_argument("--retries", type=int, default=None, help="retries for 429/5xx/timeouts (default 4)")
    g.add_argument("--timeout", type=float, default=None, help="connect/read timeout in seconds (default 20)")
    g.add_argument("--total-timeout", type=float, default=None, help="deadline per response (default 120)")
    g.add_argument("--max-bytes", type=int, default=None, help=f"largest body (default {5 * MIB})")
    g.add_argument("--backoff-base", type=float, default=None, help="first retry delay in s (default 0.5)")
    g.add_argument("--backoff-max", type=float, default=None, help="longest retry delay in s (default 60)")
    g.add_argument("--max-retry-after", type=float, default=None, help="longest Retry-After honoured")
    g.add_argument("--jitter", type=float, default=None, help="random extra delay, fraction (default 0.1)")
    g.add_argument("--user-agent", default=None, help=f"default: {DEFAULT_USER_AGENT}")
    g.add_argument("--no-fsync", action="store_true", help="skip fsync of stored files (faster)")


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``scrape`` and ``refresh`` on the main parser."""
    p = subparsers.add_parser(
        "scrape",
        help="fetch pages politely into the raw store",
        description="Fetch procedure pages politely (robots.txt, rate limit, retries) into the raw store. "
        "Rerunning resumes an interrupted crawl, or refreshes with conditional requests.",
    )
    src = p.add_argument_group("what to fetch (at least one)")
    src.add_argument(
        "--sitemap", action="append", default=[], metavar="URL", help="sitemap/index (repeatable)"
    )
    src.add_argument("--url", action="append", default=[], metavar="URL", help="a page URL (repeatable)")
    src.add_argument("--urls-file", type=Path, metavar="FILE", help="page URLs, one per line")
    src.add_argument(
        "--follow-similar", type=int, default=0, metavar="N", help="follow Similar Codes links N levels deep"
    )
    src.add_argument("--max-pages", type=_positive_int, default=None, metavar="N", help="at most N pages")
    p.add_argument("--raw-dir", type=Path, default=Path("raw"), help="raw store (default raw/)")
    p.add_argument("--source", default=None, help="source name for the store (default: each URL's host)")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST", help="another host to allow")
    p.add_argument(
        "--state-file", type=Path, default=None, help="crawl journal (default RAW_DIR/.crawl-state/)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _settings_args(p)
    p.set_defaults(func=cmd_scrape, handler=cmd_scrape)

    r = subparsers.add_parser(
        "refresh",
        help="scrape every configured source, then process",
        description="Run the Prefect refresh flow: scrape each source in the sources file, then process "
        "the raw store into a new dataset version.",
    )
    r.add_argument("--config", type=Path, default=Path("sources.toml"), help="default sources.toml")
    r.add_argument("--raw-dir", type=Path, default=Path("raw"))
    r.add_argument("--out-dir", type=Path, default=Path("processed"))
    r.add_argument("--no-process", action="store_true", help="scrape only")
    r.add_argument("--json", action="store_true", help="print per-source summaries as JSON")
    r.set_defaults(func=cmd_refresh, handler=cmd_refresh)


def _settings_from(args: argparse.Namespace) -> CrawlSettings:
    names = (
        "rate",
        "concurrency",
        "retries",
        "timeout",
        "total_timeout",
        "max_bytes",
        "backoff_base",
        "backoff_max",
        "max_retry_after",
        "jitter",
        "user_agent",
        "follow_similar",
        "max_pages",
    )
    values: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if getattr(args, "no_fsync", False):
        values["durable"] = False
    try:
        return CrawlSettings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        raise UsageError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None


def _job_from(args: argparse.Namespace) -> CrawlJob:
    urls = list(args.url)
    if args.urls_file is not None:
        urls += read_urls_file(args.urls_file)
    if not urls and not args.sitemap:
        raise UsageError("nothing to fetch: give --sitemap, --url or --urls-file")
    try:
        return CrawlJob(source=args.source, sitemaps=args.sitemap, urls=urls, allowed_hosts=args.allow_host)
    except ValidationError as e:
        raise UsageError(str(e.errors()[0]["msg"]).removeprefix("Value error, ")) from None


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a killed crawl closes its journal cleanly."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def raise_interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ProgressBar:
    """A rich progress bar on stderr fed by the crawl's progress hook."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]scrape[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task("scrape", total=0, last="")

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: str, url: str, scheduled: int) -> None:
        if event == "scheduled":
            self.progress.update(self.task, total=scheduled)
        else:
            self.progress.update(self.task, advance=1, last=f"{event}: {url[-60:]}")


def _human_summary(result: Any) -> str:
    lines = [
        f"fetched {result.fetched}, not modified {result.not_modified}, unchanged {result.unchanged}, "
        f"disallowed {result.disallowed}, failed {len(result.failed)}"
        + (f", skipped (stored before the interruption) {result.skipped}" if result.skipped else "")
        + f" in {result.elapsed_s:.1f}s"
    ]
    for f in result.failed[:20]:
        lines.append(f"  failed: {f['url']}: {f['reason']} ({f['attempts']} attempts)")
    if len(result.failed) > 20:
        lines.append(f"  ... and {len(result.failed) - 20} more (use --json for all)")
    return "\n".join(lines)


def cmd_scrape(args: argparse.Namespace) -> int:
    """``procpipe scrape``."""
    from pipeline.sources.crawl import run_crawl
    from pipeline.sources.store import StateLocked, StoreError

    try:
        settings = _settings_from(args)
        job = _job_from(args)
    except UsageError as e:
        print(f"procpipe scrape: {e}", file=sys.stderr)
        return 2
    try:
        args.raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"procpipe scrape: cannot create {args.raw_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        with _term_as_interrupt():
            if args.json:
                result = run_crawl(job, settings, args.raw_dir, state_path=args.state_file)
            else:
                with _ProgressBar() as bar:
                    result = run_crawl(job, settings, args.raw_dir, state_path=args.state_file, progress=bar)
    except KeyboardInterrupt:
        print("procpipe scrape: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (StateLocked, StoreError, OSError) as e:
        print(f"procpipe scrape: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(_human_summary(result))
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """``procpipe refresh``: the Prefect refresh flow over a sources file."""
    from pipeline.sources.config import load_sources

    try:
        load_sources(args.config)  # usage problems surface before Prefect starts
    except UsageError as e:
        print(f"procpipe refresh: {e}", file=sys.stderr)
        return 2
    from pipeline.flows_scrape import refresh

    try:
        with _term_as_interrupt():
            out = refresh(
                config=str(args.config),
                raw_dir=str(args.raw_dir),
                out_dir=str(args.out_dir),
                run_process=not args.no_process,
            )
    except KeyboardInterrupt:
        print("procpipe refresh: interrupted; run it again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the flow failed: report it on one line
        print(f"procpipe refresh: could not run: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({name: r["summary"] for name, r in out["sources"].items()}, indent=2))
    else:
        for name, r in out["sources"].items():
            s = r["summary"]
            print(
                f"{name}: fetched {s['fetched']}, not modified {s['not_modified']}, unchanged "
                f"{s['unchanged']}, disallowed {s['disallowed']}, failed {len(s['failed'])}"
            )
        if out.get("processed") is not None:
            print(f"processed into {args.out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (the main CLI registers the same commands)."""
    parser = argparse.ArgumentParser(prog="procpipe")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(argv)
    handler: Handler = args.func
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
