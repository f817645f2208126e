"""The procpipe command line; ``python -m pipeline`` is the same program.

Commands: ``run`` (the main job: raw/ -> processed/ through the Prefect flow), ``process`` (the same
with folders and knobs given), ``parse FILE`` (one page -> one record as JSON), ``show CODE`` (a
published record, readably), plus the scraper's commands (``pipeline.sources.scrape_cli``) and
``search`` (``pipeline.search_cli``).

Exit codes: 0 done (rejected pages are allowed: they are accounted for in the output), 1 failed (a
one-line error on stderr, or the page was rejected for ``parse``), 2 usage (bad arguments, missing
input folder or file). Set ``PROCPIPE_DEBUG=1`` to see tracebacks instead of one-line errors.

Prefect is imported only by the commands that run the flow, after quiet defaults are put in the
environment (each only when the user has not set it): no analytics, Prefect's own logs at WARNING
with the flow's stage lines at INFO, and a generous start-up timeout for the temporary server. No
Prefect server needs to be configured: without ``PREFECT_API_URL`` Prefect starts a temporary
local one (about 7-9 s). If Prefect cannot start at all, ``run``/``process`` say so in one line and
process the pages without it (``--no-prefect`` does that from the start).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ProcpipeError, RejectedPage, UsageError
from pipeline.version import __version__

#: ``pipeline.parse.html.ENGINES``, spelled here so ``procpipe --help`` does not import the parser
HTML_ENGINES = ("bs4", "lxml")

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from schemas import Manifest

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Environment defaults applied before Prefect is imported (a value the user set always wins).
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_CLI_COLORS": "false",
}
MAX_REJECTS_LISTED = 10


def _debug() -> bool:
    return os.environ.get("PROCPIPE_DEBUG", "") not in ("", "0", "false")


# ---------------------------------------------------------------- run / process


def _quiet_prefect() -> None:
    """Prefect defaults for a command line: quiet, local, no telemetry (before ``import prefect``)."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # harmless warnings some Prefect versions print while the temporary server shuts down
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"prefect\b.*")
    warnings.filterwarnings("ignore", message=r".*coroutine .* was never awaited", category=RuntimeWarning)
    warnings.filterwarnings("ignore", category=ResourceWarning)


class _OneLine(logging.Filter):
    """Console filter: a log record keeps its first line and loses its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        first = msg.strip().splitlines()[0] if msg.strip() else msg
        if first != msg or record.exc_info or record.exc_text:
            record.msg, record.args = first, None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _one_line_console() -> None:
    """Make Prefect's console handlers print one line per log record (``PROCPIPE_DEBUG`` keeps all)."""
    if _debug():
        return
    seen: set[int] = set()
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in ("prefect", "prefect.flow_runs"))]:
        for handler in logger.handlers:
            if id(handler) not in seen and isinstance(handler, logging.StreamHandler):
                seen.add(id(handler))
                handler.addFilter(_OneLine())


#: the parse stage shows a progress bar when it has more pages than this (and stderr is a terminal)
PROGRESS_MIN_PAGES = 500


class _ProgressBar:
    """A rich progress bar on stderr for the flow's parse stage (``pipeline.flows.parse_progress``).

    Drawn only when stderr is a terminal and there are more than ``PROGRESS_MIN_PAGES`` pages to
    parse, so logs, pipes and tests get plain lines."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            if done or total <= PROGRESS_MIN_PAGES or not sys.stderr.isatty():
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("parse"), BarColumn(), MofNCompleteColumn(), TextColumn("pages"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self.task = self.progress.add_task("parse", total=total)
            self.progress.start()
        self.progress.update(self.task, completed=done)
        if done >= total:
            self.stop()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@contextlib.contextmanager
def _progress_bar() -> Iterator[_ProgressBar]:
    """A bar that is taken down even when the flow ends (fails, is interrupted) mid-parse."""
    bar = _ProgressBar()
    try:
        yield bar
    finally:
        bar.stop()


def _run_flow(
    raw: Path | str, out: Path | str, batch_size: int, workers: int, opts: dict[str, Any], runner: Any = None
) -> Manifest:
    """Run the Prefect flow (on ``runner``, a task runner, when given); if Prefect itself cannot start,
    say so and run without it (not possible for URL folders or a Dask runner: then it fails)."""
    _quiet_prefect()
    from prefect.logging.configuration import setup_logging

    from pipeline import flows

    setup_logging()  # idempotent; its handlers exist now, so they can be filtered
    _one_line_console()
    flow = flows.process if runner is None else flows.process.with_options(task_runner=runner)
    try:
        with _progress_bar() as bar, flows.parse_progress(bar):
            state = flow(str(raw), str(out), batch_size, workers, **opts, return_state=True)
    except Exception as exc:  # noqa: BLE001 - the engine failed before the flow ran
        if _debug() or runner is not None or not isinstance(raw, Path) or not isinstance(out, Path):
            raise
        print(f"procpipe: Prefect is unavailable ({_oneline(exc)}); processing without it", file=sys.stderr)
        return _run_local(raw, out, batch_size, workers, opts)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not state.is_completed():
        raise ProcpipeError(f"flow run ended in state {state.name}")
    return result  # type: ignore[no-any-return]


def _run_local(raw: Path, out: Path, batch_size: int, workers: int, opts: dict[str, Any]) -> Manifest:
    from pipeline.incremental import run

    return run(raw, out, workers=workers, batch_size=batch_size, **opts)


def _print_summary(raw: Path | str, out: Path | str, manifest: Manifest) -> None:
    from pipeline.load import run_summary

    if not isinstance(out, Path):  # a URL: the staging copy is gone; the counts are in the manifest
        c = manifest.counts
        print(f"procpipe: {c.inputs} pages from {raw} -> {out}/versions/{manifest.run_id} (now {out}/LATEST)")
        print(f"  records {c.records}, rejects {c.rejects}, duplicates {c.duplicates}")
        return

    summary = run_summary(out, manifest.run_id)
    c = manifest.counts
    print(f"procpipe: {c.inputs} pages from {raw} -> {summary['path']} (now {out / 'latest'})")
    width = len(str(c.inputs))
    for name in ("records", "rejects", "duplicates"):
        print(f"  {name:<11}{getattr(c, name):>{width}}")
    if summary["rejects_by_reason"]:
        print("rejects by reason:")
        for reason, n in summary["rejects_by_reason"].items():
            print(f"  {n:>{width}}  {reason}")
        rejects = summary["rejects"]
        print("rejected pages:")
        for r in rejects[:MAX_REJECTS_LISTED]:
            print(f"  {r['source']}: {r['reason']}")
        if len(rejects) > MAX_REJECTS_LISTED:
            print(f"  ... and {len(rejects) - MAX_REJECTS_LISTED} more in {out / 'latest' / 'rejects.jsonl'}")
    from pipeline.versions_cli import refresh_line

    print(refresh_line(manifest))


def cmd_process(args: argparse.Namespace) -> int:
    """``run`` and ``process``: every page under the raw folder into a new published version.

    Either folder may be an fsspec URL (``file://`` ones are local paths); ``--runner dask`` or
    ``--dask-address`` runs the batches on Dask (``pipeline.dask_runner``)."""
    from pipeline.sources.remote import exists_dir, local_path

    raw_local, out_local = local_path(args.raw_dir), local_path(args.out_dir)
    raw: Path | str = Path(raw_local) if raw_local is not None else args.raw_dir
    out: Path | str = Path(out_local) if out_local is not None else args.out_dir.rstrip("/")
    if not (raw.is_dir() if isinstance(raw, Path) else exists_dir(raw)):
        hint = "" if args.raw_dir != "raw" else " (run from the project folder, or give --raw-dir)"
        raise UsageError(f"raw folder not found: {raw}{hint}")
    if args.batch_size < 1 or args.workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1")
    if args.html_engine:
        # read by pipeline.parse.html in every process of the run (workers inherit the environment)
        os.environ["PROCPIPE_HTML_ENGINE"] = args.html_engine
    from pipeline.limits import current_limits

    current_limits()  # a bad PROCPIPE_MAX_* value: one usage error now, before any flow starts
    dask = args.runner == "dask" or args.dask_address is not None
    if args.no_prefect and (dask or not isinstance(raw, Path) or not isinstance(out, Path)):
        raise UsageError("--no-prefect needs local folders and the default runner")
    if isinstance(out, Path):
        if out.exists() and not out.is_dir():
            raise UsageError(f"output folder is a file: {out}")
        out.mkdir(parents=True, exist_ok=True)  # fail in a second, not after Prefect's start-up
    from pipeline.versions_cli import refresh_options

    opts = refresh_options(args)  # a bad gates file is a usage error before Prefect starts
    if args.no_prefect:
        assert isinstance(raw, Path) and isinstance(out, Path)
        manifest = _run_local(raw, out, args.batch_size, args.workers, opts)
    else:
        runner = None
        if dask:
            from pipeline.dask_runner import task_runner

            runner = task_runner(args.workers, args.dask_address)
        manifest = _run_flow(raw, out, args.batch_size, args.workers, opts, runner)
    _print_summary(raw, out, manifest)
    return EXIT_OK


# ---------------------------------------------------------------- parse


def cmd_parse(args: argparse.Namespace) -> int:
    """One page (and the sidecar beside it) -> one record as JSON; a reject's reason and exit 1."""
    from pipeline.api import parse_page
    from pipeline.sources.files import read_page

    file = Path(args.file)
    if not file.is_file():
        raise UsageError(f"no such file: {file}")
    try:
        # read_page applies the pipeline's input rules: file type, size limit, sidecar, its sha256
        page = read_page(file, file.parent)
        meta = dict(page.meta)
        if args.url:
            meta["url"] = args.url
        record = parse_page(page.content, url=meta.get("url"), path=file.as_posix(), meta=meta)
    except RejectedPage as exc:
        print(f"procpipe: rejected at {exc.stage}: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    print(record.model_dump_json(indent=None if args.compact else 2, exclude_none=args.compact))
    return EXIT_OK


# ---------------------------------------------------------------- show


def find_records(code: str, out_dir: Path, version: str = "latest") -> list[dict[str, Any]]:
    """Published records whose code (or ``system:code`` record id) is ``code``, case-insensitive."""
    from pipeline.load import version_dir

    wanted = code.strip().upper()
    needle = wanted.split(":")[-1]
    found = []
    with (version_dir(out_dir, version) / "procedures.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if needle not in line.upper():
                continue
            rec = json.loads(line)
            if wanted in (str(rec.get("code", "")).upper(), str(rec.get("record_id", "")).upper()):
                found.append(rec)
    return found


def _items(items: list[dict[str, Any]], depth: int = 0) -> list[RenderableType]:
    from rich.text import Text

    lines: list[RenderableType] = []
    for item in items:
        line = Text("  " * depth + ("• " if depth % 2 == 0 else "◦ "))
        if item.get("label"):
            line.append(f"{item['label']}: ", style="bold")
        line.append(item.get("text") or "")
        lines.append(line)
        lines += _items(item.get("items") or [], depth + 1)
    return lines


def _range(rec: dict[str, Any], name: str) -> str | None:
    lo, hi = rec.get(f"{name}_min"), rec.get(f"{name}_max")
    if lo is None and hi is None:
        return None
    return str(lo) if lo == hi or hi is None else f"{lo if lo is not None else '?'}-{hi}"


def _rule(title: str | Text) -> RenderableType:
    """A section heading: a blank line, then the title on a left-aligned rule."""
    from rich.console import Group
    from rich.rule import Rule
    from rich.text import Text

    text = Text(title, style="bold") if isinstance(title, str) else title
    return Group(Text(""), Rule(text, align="left", style="dim"))


def _indent(renderable: RenderableType, pad: tuple[int, int, int, int] = (0, 0, 0, 2)) -> RenderableType:
    from rich.padding import Padding

    return Padding(renderable, pad, expand=False)


def render_record(rec: dict[str, Any]) -> RenderableType:
    """A record as rich renderables: title, names, sections with their lists, typed fields, sources."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    head = Text(rec.get("title") or rec.get("procedure_name") or rec["record_id"], style="bold")
    head.append(f"  {rec['code_system'].upper()} {rec['code']}", style="cyan")
    parts.append(head)

    names = Table.grid(padding=(0, 2))
    for label, value in (
        ("procedure name", rec.get("procedure_name")),
        ("common names", ", ".join(rec.get("common_names") or []) or None),
        ("technical term", rec.get("technical_term")),
    ):
        if value:
            names.add_row(Text(label, style="dim"), Text(value))
    if names.row_count:
        parts.append(names)
    for line in rec.get("preamble") or []:
        parts.append(Text(line, style="italic"))

    for section in rec.get("sections") or []:
        if section.get("key") == "similar_codes" and not (section.get("text") or section.get("items")):
            continue  # shown from the similar_codes field below
        title = Text(section.get("heading") or section.get("key") or "", style="bold")
        if section.get("key") not in (None, "other"):
            title.append(f"  [{section['key']}]", style="dim")
        parts.append(_rule(title))
        body: list[RenderableType] = []
        if section.get("text"):
            body.append(Text(section["text"]))
        body += _items(section.get("items") or [])
        for sub in section.get("subsections") or []:
            body.append(Text(sub.get("heading") or "", style="bold italic"))
            if sub.get("text"):
                body.append(_indent(Text(sub["text"]), (0, 0, 0, 2)))
            body += [_indent(line, (0, 0, 0, 2)) for line in _items(sub.get("items") or [])]
        parts.append(_indent(Group(*body), (0, 0, 0, 2)))

    facts = Table.grid(padding=(0, 2))
    for label, value in (
        ("duration (minutes)", _range(rec, "duration_minutes")),
        ("hospital stay (days)", _range(rec, "hospital_stay_days")),
        ("recovery (weeks)", _range(rec, "recovery_weeks")),
        ("fasting (hours)", _range(rec, "fasting_hours")),
        ("anesthesia", ", ".join(rec.get("anesthesia_types") or []) or None),
        ("care settings", ", ".join(rec.get("care_settings") or []) or None),
    ):
        if value:
            facts.add_row(Text(label, style="dim"), Text(value))
    if facts.row_count:
        parts += [_rule("Typed fields"), _indent(facts, (0, 0, 0, 2))]

    similar = rec.get("similar_codes") or []
    if similar:
        table = Table("system", "code", "title", box=None, padding=(0, 2), header_style="dim")
        for s in similar:
            table.add_row(s.get("code_system") or "", s.get("code") or "", Text(s.get("title") or ""))
        parts += [_rule("Similar codes"), _indent(table, (0, 0, 0, 2))]

    src = rec.get("source") or {}
    where = Table.grid(padding=(0, 2))
    for label, value in (
        ("url", src.get("url")),
        ("path", src.get("path")),
        ("fetched at", src.get("fetched_at")),
        ("sha256", src.get("sha256")),
        ("parser", f"{rec.get('parser_version')} (schema {rec.get('schema_version')})"),
    ):
        if value:
            where.add_row(Text(label, style="dim"), Text(str(value)))
    parts += [_rule("Source"), _indent(where, (0, 0, 0, 2))]
    return Group(*parts)


def cmd_show(args: argparse.Namespace) -> int:
    """A published record, readably (``--json``: as JSON)."""
    records = find_records(args.code, Path(args.out_dir), args.version)
    if not records:
        raise ProcpipeError(f"no record for {args.code} in {Path(args.out_dir) / args.version}")
    if args.json:
        for rec in records:
            print(json.dumps(rec, ensure_ascii=False, indent=2))
        return EXIT_OK
    from rich.console import Console

    console = Console(highlight=False)
    for rec in records:
        console.print(render_record(rec))
    return EXIT_OK


# ---------------------------------------------------------------- parser and main


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _add_process_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw-dir", default="raw", metavar="DIR", help="input pages, searched recursively (raw)")
    p.add_argument("--out-dir", default="processed", metavar="DIR", help="output root (processed)")
    p.add_argument("--batch-size", type=_positive, default=200, metavar="N", help="pages per task (200)")
    p.add_argument("--workers", type=_positive, default=2, metavar="N", help="parsing processes (2)")
    p.add_argument("--no-prefect", action="store_true", help="run the same job without Prefect")
    p.add_argument(
        "--html-engine", choices=HTML_ENGINES, default=None,
        help="bs4: BeautifulSoup on lxml (default; $PROCPIPE_HTML_ENGINE); lxml: lxml's parser feeding"
        " the same builder, no BeautifulSoup tree (same records, about 4x cheaper parsing)",
    )  # fmt: skip
    p.add_argument(
        "--runner", choices=("default", "dask"), default="default",
        help="where batches run: this machine's processes (default) or a Dask cluster (dask: a local one"
        " of --workers processes unless --dask-address is given)",
    )  # fmt: skip
    p.add_argument(
        "--dask-address", default=None, metavar="URL", help="an existing Dask scheduler (tcp://host:port)"
    )
    from pipeline.versions_cli import add_refresh_args

    add_refresh_args(p)  # --keep --wait --force --gates --full
    p.set_defaults(func=cmd_process)


def build_parser() -> argparse.ArgumentParser:
    """The ``procpipe`` argument parser, with the scraper's commands registered on it."""
    parser = argparse.ArgumentParser(
        prog="procpipe",
        description="Medical procedure pages in, validated and versioned Parquet/JSON datasets out.",
        epilog="Exit codes: 0 done (rejects allowed), 1 failed, 2 usage. PROCPIPE_DEBUG=1 shows tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"procpipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="the main job: every page in raw/ into a new version in processed/")
    _add_process_args(p)
    p = sub.add_parser("process", help="like run, with the folders and knobs given")
    _add_process_args(p)

    p = sub.add_parser("parse", help="parse one page (and its sidecar) and print the record as JSON")
    p.add_argument("file", metavar="FILE", help="an .html/.htm/.txt/.md page")
    p.add_argument("--url", help="the page's URL (tells the code system and code; overrides the sidecar)")
    p.add_argument("--compact", action="store_true", help="one line, null fields left out")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("show", help="show a published record readably")
    p.add_argument("code", metavar="CODE", help="a code (63185) or record id (cpt:63185)")
    p.add_argument("--out-dir", default="processed", metavar="DIR", help="published datasets (processed)")
    p.add_argument("--version", default="latest", help="a run id from OUT_DIR/versions (latest)")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=cmd_show)

    from pipeline.sources import scrape_cli

    scrape_cli.add_commands(sub)
    from pipeline import search_cli

    search_cli.add_commands(sub)
    from pipeline import versions_cli

    versions_cli.add_commands(sub)
    return parser


def _oneline(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if text and isinstance(exc, ProcpipeError | OSError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (argparse itself exits 2 on bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _quiet_prefect()  # every command that may start Prefect (run, process, refresh) gets the same defaults
    try:
        return int(func(args))
    except UsageError as exc:
        print(f"procpipe {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("procpipe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`procpipe show X | head`); keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if _debug():
            raise
        print(f"procpipe {args.command}: {_oneline(exc)}", file=sys.stderr)
        return EXIT_FAILED
