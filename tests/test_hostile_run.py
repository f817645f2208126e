"""A run under stress: a raw folder mixing hostile inputs with good pages, processed by the real CLI.

``procpipe process --no-prefect`` runs in a subprocess (a generous timeout bounds it; nothing is
timed) over good pages in three formats, a duplicate, and every kind of hostile input the project
knows: empty, binary, oversized, slow, deep, list-heavy, entity-declaring, script-only and
script-laden pages, odd encodings, broken and hostile sidecars, a link out of the raw folder, a
diagnosis page. It must exit 0; the manifest must count every input (inputs == records + rejects +
duplicates); every bad input must be a reject with a one-line reason; no script text may reach any
published file; and nothing may be written outside the output folder.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

SENTINEL = "QXRUNSCRIPTQX"
OUTSIDE_SECRET = "QXRUNOUTSIDEQX"


def text_page(title: str, code_line: str = "CPT4 code", extra: str = "") -> str:
    return f"""Search all medical codes

{title}

{code_line}

Summary

A short description of the {title.lower()}, written for this test.{extra}

Risks and Complications

  • Bleeding
  • Infection
"""


def html_page(title: str, body_extra: str = "", head_extra: str = "", charset: str = "utf-8") -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="{charset}"><title>{title}</title>{head_extra}</head>'
        f"<body><main><h1>{title}</h1><p>HCPCS code</p><h2>Summary</h2><p>About the {title.lower()}.</p>"
        f"{body_extra}<h2>Risks and Complications</h2><ul><li>Skin irritation</li></ul></main></body></html>"
    )


MD_PAGE = """# Knee arthroscopy

CPT4 code

## Summary

A camera looks inside the knee through a small opening.

## Recovery

- Crutches for a few days.
- Exercises for some weeks.
"""

SCRIPTS = (
    f"<script>var a = '{SENTINEL}';</script><style>.{SENTINEL} {{}}</style>"
    f"<svg><script>{SENTINEL}()</script></svg><template><p>{SENTINEL}</p></template>"
)
LAUGHS = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))

#: relative path -> (content, expected: "record" | "duplicate" | reject reason substring | tuple of options)
Expect = str | tuple[str, ...]


def build_raw(raw: Path, outside: Path) -> dict[str, Expect]:
    """Write the stress folder; returns what each input must become."""
    files: dict[str, tuple[bytes | str, Expect]] = {
        # good pages
        "good/cpt/63185.txt": (text_page("Spinal decompression"), ("record", "duplicate")),
        "good/hcpcs/E0114.html": (html_page("Underarm crutches"), "record"),
        "good/cpt/29881.md": (MD_PAGE, "record"),
        "mirror/cpt/63185.txt": (
            text_page("Spinal decompression", extra=" Mirrored."),
            ("record", "duplicate"),
        ),
        # empty and binary
        "bad/empty.txt": (b"", "empty page (no text)"),
        "bad/blank.html": (b" \n\t\r\n  ", "empty page (no text)"),
        "bad/scan.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 4, "unsupported file type .pdf"),
        "bad/cpt/63186.html": (b"%PDF-1.7\n" + bytes(range(256)) * 4, "binary file"),
        "bad/cpt/63187.txt": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "binary file"),
        "bad/cpt/63188.txt": (random.Random(3).randbytes(20_000), "binary file"),
        # size, structure, time
        "bad/cpt/63189.txt": (b"word " * 2_000_000, "page too large (10000000 bytes > 5242880)"),
        "bad/cpt/63190.html": (
            html_page("Many items", "<ul>" + "<li>item</li>" * 100_000 + "</ul>"),
            "too many list items (100001 > 10000)",
        ),
        "bad/cpt/63191.html": (
            html_page("Slow page", "<p>" + "a " * 2_400_000 + "</p>"),
            ("too slow to parse (over 1 s)", "record"),
        ),
        "bad/cpt/63192.html": (
            html_page("Deep page", "<div>" * 50_000 + "deep" + "</div>" * 50_000),
            ("record", "too slow to parse (over 1 s)"),
        ),
        "bad/cpt/63193.html": (
            f"<!DOCTYPE html [{LAUGHS}]>" + html_page("Laughs", "<p>&lol9;</p>"),
            "record",
        ),
        "bad/cpt/63200.md": (
            "# Continued\n\nCPT4 code\n\n## Summary\n\n- item\n" + "    more words\n" * 20_000,
            "record",
        ),
        # scripts
        "bad/cpt/63194.html": (
            f"<html><head><script>{SENTINEL}</script></head><body>{SCRIPTS}</body></html>",
            ("record", "no procedure code"),
        ),
        "bad/nocode/only-script.html": (f"<script>{SENTINEL}</script>", "no procedure code found"),
        "bad/cpt/63195.html": (html_page("Scripted page", SCRIPTS, head_extra=SCRIPTS), "record"),
        "bad/cpt/63196.md": (
            MD_PAGE.replace("## Recovery", f"<script>\n{SENTINEL}\n</script>\n\n## Recovery"),
            "record",
        ),
        "bad/cpt/63201.txt": (
            text_page("Text with script", extra=f" <style>.{SENTINEL}{{}}</style>"),
            "record",
        ),
        # encodings
        "bad/cpt/63197.html": (b"\xff\xfe" + html_page("Wide page").encode("utf-16-le"), "record"),
        "bad/cpt/63198.html": (
            html_page("Caf\u00e9 \u201cquoted\u201d", charset="windows-1252").encode("cp1252"),
            "record",
        ),
        "bad/cpt/63199.txt": (text_page("Nul page", extra=" with\x00 a few\x00 NULs").encode(), "record"),
        "bad/cpt/63202.txt": (text_page("Latin page").encode() + b" \xe9\xff\xfe broken", "record"),
        # sidecars
        "side/a.txt": (text_page("Sidecar a"), "broken sidecar a.meta.json: invalid JSON"),
        "side/a.meta.json": ("{not json", ""),
        "side/b.txt": (text_page("Sidecar b"), "broken sidecar b.meta.json: code"),
        "side/b.meta.json": (json.dumps({"code_system": "cpt", "code": 63185}), ""),
        "side/c.txt": (text_page("Sidecar c"), "invalid cpt code"),
        "side/c.meta.json": (json.dumps({"code_system": "cpt", "code": "../../etc/passwd"}), ""),
        "side/d.txt": (text_page("Sidecar d"), "invalid cpt code"),
        "side/d.meta.json": (json.dumps({"code_system": "cpt", "code": "631\x0085"}), ""),
        "side/e.txt": (text_page("Sidecar e", code_line=""), "no procedure code found"),
        "side/e.meta.json": (json.dumps({"url": "https://example.org/code/cpt4/../../../../etc/passwd"}), ""),
        "side/f.txt": (text_page("Sidecar f", code_line=""), "no procedure code found"),
        "side/f.meta.json": (json.dumps({"url": "/etc/passwd"}), ""),
        "side/g.txt": (text_page("Sidecar g"), "source URL is not a web address (javascript:)"),
        "side/g.meta.json": (json.dumps({"url": "javascript:alert(1)", "code": "63185"}), ""),
        "side/h.txt": (text_page("Sidecar h"), "broken sidecar h.meta.json: invalid JSON"),
        "side/h.meta.json": ("[" * 20_000 + "]" * 20_000, ""),
        # a diagnosis page
        "diag/sprain.txt": (
            "Sprain\n\nICD-10-CM code\n\nName of the Condition:\n\nAnkle sprain\n\nCauses\n\n"
            "  • A twist\n\nSymptoms\n\n  • Swelling\n",
            "not a procedure page",
        ),
    }
    expect: dict[str, Expect] = {}
    for rel, (data, outcome) in files.items():
        path = raw / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        if not rel.endswith(".meta.json"):
            expect[rel] = outcome
    secret = outside / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(text_page(OUTSIDE_SECRET), encoding="utf-8")
    (raw / "link").mkdir()
    os.symlink(secret, raw / "link" / "63185.txt")
    expect["link/63185.txt"] = "symbolic link leads outside the raw folder"
    return expect


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` except ``skip`` -> (size, mtime_ns), symlinks not followed."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirs, names in os.walk(root):
        if Path(dirpath) == skip:
            dirs[:] = []
            continue
        for name in dirs + names:
            p = Path(dirpath, name)
            if p == skip:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if not p.is_dir() else 0, st.st_mtime_ns)
    return out


def matches(outcome: Expect, got: str) -> bool:
    options = outcome if isinstance(outcome, tuple) else (outcome,)
    return any(got == o or (o not in ("record", "duplicate") and o in got) for o in options)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks and SIGALRM")
def test_a_hostile_folder_beside_good_pages_processes_cleanly(tmp_path: Path, repo_root: Path) -> None:
    raw, out, outside, cwd = tmp_path / "raw", tmp_path / "out", tmp_path / "outside", tmp_path / "cwd"
    cwd.mkdir()
    expect = build_raw(raw, outside)
    # most of this folder is meant to be rejected: the reject-rate quality gate would (rightly) refuse it
    gates = tmp_path / "gates.toml"
    gates.write_text("[gates]\nmax_reject_rate_percent = 100\n", encoding="utf-8")
    before = snapshot(tmp_path, skip=out)
    env = {**os.environ, "PROCPIPE_MAX_PARSE_SECONDS": "1"}
    procpipe = Path(sys.executable).with_name("procpipe")
    cmd = [
        str(procpipe),
        "process",
        "--no-prefect",
        "--raw-dir",
        str(raw),
        "--out-dir",
        str(out),
        "--gates",
        str(gates),
    ]
    proc = subprocess.run(
        [*cmd, "--workers", "2", "--batch-size", "4"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    # nothing written outside the output folder (the raw folder, the link's target, the cwd untouched)
    assert snapshot(tmp_path, skip=out) == before

    latest = out / "latest"
    manifest = json.loads((latest / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    assert counts["inputs"] == len(expect)
    assert counts["inputs"] == counts["records"] + counts["rejects"] + counts["duplicates"]

    rejects = [
        json.loads(line) for line in (latest / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    records = [
        json.loads(line) for line in (latest / "procedures.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    dups = [
        json.loads(line) for line in (latest / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    got: dict[str, str] = {}
    for r in rejects:
        assert r["reason"] and "\n" not in r["reason"], r
        assert not r["reason"].startswith("internal error"), r
        assert r["source"] not in got, f"{r['source']} rejected twice"
        got[r["source"]] = r["reason"]
    for rec in records:
        got[rec["source"]["path"]] = "record"
    for d in dups:
        path = d.get("source") or d.get("path") or (d.get("source_path"))
        if isinstance(path, str):
            got.setdefault(path, "duplicate")
    wrong = {
        rel: (want, got.get(rel))
        for rel, want in expect.items()
        if not matches(want, got.get(rel, "missing"))
    }
    assert not wrong, "\n".join(f"{k}: expected {v[0]!r}, got {v[1]!r}" for k, v in wrong.items())
    assert len(rejects) == counts["rejects"] and len(records) == counts["records"]

    # no script text, and nothing from outside raw, in any text file published
    for path in latest.resolve().rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json", ".md", ".sqlite"):
            data = path.read_bytes()
            assert SENTINEL.encode() not in data, f"script text in {path.name}"
            assert OUTSIDE_SECRET.encode() not in data, f"a file outside raw was read into {path.name}"
