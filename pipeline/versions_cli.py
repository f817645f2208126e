"""CLI commands of the refresh side: ``procpipe versions``, ``procpipe verify``, ``procpipe serve``.

``add_commands(subparsers)`` registers them on the main parser; each sets ``func`` to a function
taking the parsed ``argparse.Namespace`` and returning the exit code (the main CLI maps a
``UsageError`` to 2 and other errors to 1 with a one-line message).

- ``versions``: the published versions, oldest first: time, counts, reused inputs, changes
  against the version before, and flags (``latest``, ``forced`` past a failed gate).
- ``verify [VERSION]``: re-reads every file of a version (``latest`` by default; ``--all``: every
  version) against its manifest; exits 1 naming each file that differs.
- ``serve --cron EXPR | --interval SECONDS``: the refresh on a schedule (``pipeline.serve``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

EXIT_OK, EXIT_FAILED = 0, 1


def _changes(c: dict[str, int] | None) -> str:
    if c is None:
        return "-"
    return f"+{c.get('added', 0)} ~{c.get('changed', 0)} -{c.get('removed', 0)}"


def cmd_versions(args: argparse.Namespace) -> int:
    """``procpipe versions``: one line per published version."""
    from pipeline.publish.versions import list_versions

    out = Path(args.out_dir)
    found = list_versions(out)
    if args.json:
        rows: list[dict[str, Any]] = [
            {
                "run_id": v.run_id,
                "created_at": v.manifest.created_at.isoformat(),
                "counts": v.manifest.counts.model_dump(),
                "reused": v.manifest.reused,
                "changes": v.manifest.changes,
                "previous_run_id": v.manifest.previous_run_id,
                "latest": v.latest,
                "forced": v.manifest.forced,
            }
            for v in found
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not found:
        print(f"no versions in {out / 'versions'}", file=sys.stderr)
        return EXIT_OK
    head = f"{'run id':<24} {'created (UTC)':<19} {'inputs':>7} {'records':>7} {'rejects':>7} {'dups':>5} "
    head += f"{'reused':>7}  {'changes':<18} flags"
    print(head)
    for v in found:
        m, c = v.manifest, v.manifest.counts
        flags = ",".join(f for f, on in (("latest", v.latest), ("forced", m.forced)) if on)
        reused = "-" if m.reused is None else str(m.reused)
        print(
            f"{v.run_id:<24} {m.created_at:%Y-%m-%d %H:%M:%S} {c.inputs:>7} {c.records:>7} {c.rejects:>7} "
            f"{c.duplicates:>5} {reused:>7}  {_changes(m.changes):<18} {flags}"
        )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """``procpipe verify [VERSION]``: exit 0 when every file matches the manifest, else 1."""
    from pipeline.publish.versions import list_versions, verify
    from pipeline.publish.writer import latest_version

    out = Path(args.out_dir)
    if args.all:
        targets = [v.path for v in list_versions(out)]
        if not targets:
            raise UsageError(f"no versions in {out / 'versions'}")
    elif args.version in (None, "latest"):
        found = latest_version(out)
        if found is None:
            raise UsageError(f"nothing published in {out} yet")
        targets = [found]
    else:
        path = out / "versions" / args.version
        if not path.is_dir() or args.version.startswith(".") or "/" in args.version:
            raise UsageError(f"no version {args.version!r} in {out / 'versions'}")
        targets = [path]
    bad = 0
    for path in targets:
        problems = verify(path)
        if problems:
            bad += 1
            for p in problems:
                print(f"{path.name}: {p}", file=sys.stderr)
            print(f"FAILED {path.name}: {len(problems)} difference(s) from its manifest")
        else:
            print(f"ok {path.name}")
    return EXIT_FAILED if bad else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """``procpipe serve``: serve the refresh on a schedule until Ctrl-C or SIGTERM."""
    if args.interval is not None and args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds")
    if args.cron is not None:
        from prefect.client.schemas.schedules import CronSchedule
        from pydantic import ValidationError

        try:
            CronSchedule(cron=args.cron)
        except ValidationError as exc:
            msg = str(exc.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
            raise UsageError(f"--cron: {msg}") from None
    raw = Path(args.raw_dir)
    if not raw.is_dir():
        raise UsageError(f"raw folder not found: {raw}")
    # the project's Prefect home, as the Makefile sets it, unless the user chose one
    os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
    from pipeline.serve import serve

    serve(
        cron=args.cron,
        interval=args.interval,
        config=args.config,
        raw_dir=raw,
        out_dir=args.out_dir,
        keep=args.keep,
        gates=args.gates,
        name=args.name,
        startup_timeout=args.startup_timeout,
        ui=not args.no_ui,
        announce=lambda line: print(line, flush=True),
    )
    return EXIT_OK


def add_refresh_args(p: argparse.ArgumentParser) -> None:
    """The refresh options of ``run`` and ``process``: versions kept, lock wait, gates, full run."""
    g = p.add_argument_group("versions, lock and quality gates")
    g.add_argument("--keep", type=_at_least_one, default=None, metavar="N", help="versions kept (10)")
    g.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="wait this long for another run publishing into OUT_DIR (default: fail at once)",
    )  # fmt: skip
    g.add_argument("--gates", default=None, metavar="FILE", help="quality gates file (procpipe.toml [gates])")
    g.add_argument("--force", action="store_true", help="publish even when a quality gate fails (recorded)")
    g.add_argument("--full", action="store_true", help="parse every page again (no incremental reuse)")


def refresh_options(args: argparse.Namespace) -> dict[str, Any]:
    """``keep``, ``wait``, ``force``, ``gates``, ``full`` for ``pipeline.incremental.run`` and the flow;
    the gates file is read here so that a bad one is a usage error before anything runs."""
    from pipeline.publish.gates import load_config

    if args.wait < 0:
        raise UsageError("--wait must be 0 or more seconds")
    load_config(args.gates, cwd=Path.cwd())
    gates = str(Path(args.gates).resolve()) if args.gates else None
    return {"keep": args.keep, "wait": args.wait, "force": args.force, "gates": gates, "full": args.full}


def refresh_line(manifest: Any) -> str:
    """One line after a run: inputs reused, changes against the previous version, the gates."""
    parts = []
    if manifest.reused is not None:
        parts.append(f"reused {manifest.reused} of {manifest.counts.inputs} inputs")
    if manifest.changes is not None:
        against = manifest.previous_run_id or "nothing (first version)"
        parts.append(f"changes {_changes(manifest.changes)} against {against}")
    failed = [r["gate"] for r in manifest.gates or [] if not r["passed"]]
    parts.append(f"gates FAILED ({', '.join(failed)}), published with --force" if failed else "gates passed")
    return "  " + "; ".join(parts)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``versions``, ``verify`` and ``serve`` on the main parser."""
    p = subparsers.add_parser("versions", help="list the published versions: time, counts, changes")
    p.add_argument("--out-dir", default="processed", metavar="DIR", help="output root (processed)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_versions)

    p = subparsers.add_parser(
        "verify",
        help="re-read every file of a version against its manifest; exit 1 naming any difference",
    )
    p.add_argument("version", nargs="?", default=None, metavar="VERSION", help="a run id (default latest)")
    p.add_argument("--out-dir", default="processed", metavar="DIR", help="output root (processed)")
    p.add_argument("--all", action="store_true", help="verify every version")
    p.set_defaults(func=cmd_verify)

    p = subparsers.add_parser(
        "serve",
        help="run the refresh on a schedule as a Prefect deployment",
        description="Serve the refresh (scrape the sources file if there is one, then process) on a cron "
        "or interval schedule until Ctrl-C or SIGTERM. With no PREFECT_API_URL configured a local "
        "Prefect server is started on 127.0.0.1 and stopped on exit.",
    )
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='a cron schedule, e.g. "0 3 * * *" (03:00 UTC daily)')
    when.add_argument("--interval", type=float, metavar="SECONDS", help="run every SECONDS seconds")
    p.add_argument("--config", default="sources.toml", metavar="FILE", help="sources file (sources.toml)")
    p.add_argument("--raw-dir", default="raw", metavar="DIR", help="raw pages (raw)")
    p.add_argument("--out-dir", default="processed", metavar="DIR", help="output root (processed)")
    p.add_argument("--keep", type=_at_least_one, default=None, metavar="N", help="versions kept (10)")
    p.add_argument("--gates", default=None, metavar="FILE", help="quality gates file (procpipe.toml)")
    p.add_argument("--name", default="procpipe-refresh", help="deployment name (procpipe-refresh)")
    p.add_argument(
        "--startup-timeout", type=float, default=120.0, metavar="SECONDS", help="server start-up wait (120)"
    )
    p.add_argument("--no-ui", action="store_true", help="start the local server without its web UI")
    p.set_defaults(func=cmd_serve)
