"""Structure-aware generators of hostile pages, and the invariants every parse outcome must keep.

Pages are not random bytes only: a page *model* (code, title, vocabulary and unknown headings,
paragraphs, nested and labelled list items) is rendered the way real sites write it (five HTML
markup styles with or without a content region and chrome, both text-rendering styles, Markdown),
then optionally *mutated*: truncated, cut, duplicated, bytes flipped, hostile fragments spliced in
(unclosed tags, deep nesting runs, DOCTYPE entity declarations, CDATA, char refs to NUL and
surrogates, BOMs, bidi controls, huge attributes, Markdown quote and fence runs), re-encoded
(UTF-16 with a BOM, cp1252 with ``<meta charset>``). Script and style elements carrying
``SENTINEL`` are planted in well-formed pages, which must never leak it into a record.

Shared by the pytest properties (``tests/fuzz/test_fuzz_pages.py``) and the long-running harness
(``tests/fuzz/fuzz_parse.py``). All page text is written here, in our own words.
"""

from __future__ import annotations

import html
import json
import string
from dataclasses import dataclass, field
from typing import Any, get_args

from hypothesis import strategies as st

from pipeline.api import MAX_REASON
from pipeline.errors import RejectedPage
from schemas import ProcedureRecord
from schemas.models import Stage

#: Planted in script/style elements; must never appear in a record.
SENTINEL = "QXSCRIPTSENTINELQX"

CODES: list[tuple[str, str, str]] = [
    # (folder name, code, code line as written on the page)
    ("cpt", "63185", "CPT4 code"),
    ("cpt", "4567F", "CPT code"),
    ("hcpcs", "E0114", "HCPCS code"),
    ("hcpcs", "A4253", "HCPCS Level II code"),
    ("icd10pcs", "0DTJ4ZZ", "ICD-10-PCS code"),
    ("cdt", "D2740", "CDT code"),
]
KNOWN_HEADINGS = [
    "Name of the Procedure",
    "Summary",
    "Purpose",
    "Indications",
    "Contraindications",
    "Preparation",
    "Procedure Description",
    "Tools, Equipment, and Technology Used",
    "Anesthesia or Sedation",
    "Duration",
    "Setting",
    "Personnel",
    "Risks and Complications",
    "Benefits",
    "Recovery",
    "Alternatives",
    "Patient Experience",
    "Similar Codes",
]
OTHER_HEADINGS = ["Background", "Notes for the Team", "Causes", "Symptoms", "Frequently Asked"]
WORDS = (
    "the a patient surgeon small cut camera knee bone joint heals rest week weeks hours minutes "
    "general local anesthesia sedation bleeding infection swelling clinic hospital outpatient usually "
    "about 2 to 4 8 30 gently removed placed checked before after during may can is are with without "
    "fasting nothing eat drink walking crutches brace dressing stitches scar pain relief"
).split()
HREFS = [
    "/code/cpt4/63190-laminectomy",
    "https://example.org/code/hcpcs/E0115",
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "http://[::1",
    "https://[zz]/x",
    "//evil.example/x",
    "",
    "#top",
    "?q=../../etc/passwd",
    "file:///etc/passwd",
]
LABELS = ["Common name", "Technical term", "Goals", "Patient criteria", "Common Risks", "Note"]


# -- the page model ---------------------------------------------------------------------------------


@dataclass
class ItemModel:
    text: str
    label: str | None = None
    children: list[ItemModel] = field(default_factory=list)


@dataclass
class SectionModel:
    heading: str
    paragraphs: list[str]
    items: list[ItemModel]
    ordered: bool


@dataclass
class PageModel:
    system: str
    code: str
    code_line: str
    title: str
    sections: list[SectionModel]
    #: Similar Codes links (href, code, title); hostile hrefs included
    links: list[tuple[str, str, str]] = field(default_factory=list)


_sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=14).map(
    lambda ws: (" ".join(ws)).capitalize() + "."
)
_items = st.recursive(
    st.builds(ItemModel, _sentence, st.none() | st.sampled_from(LABELS)),
    lambda kids: st.builds(
        ItemModel, _sentence, st.none() | st.sampled_from(LABELS), st.lists(kids, min_size=1, max_size=3)
    ),
    max_leaves=6,
)
_section = st.builds(
    SectionModel,
    st.sampled_from(KNOWN_HEADINGS) | st.sampled_from(OTHER_HEADINGS),
    st.lists(_sentence, max_size=2),
    st.lists(_items, max_size=4),
    st.booleans(),
)


@st.composite
def page_models(draw: st.DrawFn) -> PageModel:
    system, code, code_line = draw(st.sampled_from(CODES))
    title = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)).capitalize()
    links = draw(
        st.lists(
            st.tuples(
                st.sampled_from(HREFS), st.sampled_from(["63190", "E0115", "D2750"]), st.sampled_from(WORDS)
            ),
            max_size=3,
        )
    )
    return PageModel(system, code, code_line, title, draw(st.lists(_section, max_size=6)), links)


# -- renderers --------------------------------------------------------------------------------------

HTML_STYLES = ("h2", "bold", "dl", "details", "br")
TEXT_STYLES = ("blank", "dense")

_SCRIPTS = [
    '<script>var s = "{S}"; if (a < b && c > d) {{ go(); }}</script>',
    '<script type="application/ld+json">{{"name": "{S}"}}</script>',
    "<style>.{S} {{ color: red }} p::after {{ content: '{S}' }}</style>",
    "<SCRIPT LANGUAGE=javascript>document.write('<p>{S}</p>')</SCRIPT>",
    '<script><!-- "{S}" --></script>',
    '<svg width="1"><script>alert("{S}")</script><style>#{S}{{}}</style></svg>',
    '<script src="/x.js"></script><script>window.{S} = 1</script>',
    "<style media=print>/* {S} */</style>",
    '<script>var t = "</p><h2>{S}</h2>";</script>',
]
_TEXT_SCRIPTS = [
    "<script>var s = '{S}';</script>",
    "<style>.{S} {{ color: red }}</style>",
    '<script type="text/javascript">\nwindow.a = "{S}";\nwindow.b = 2;\n</script>',
    "<SCRIPT>{S}</SCRIPT>",
    "<style>\n.{S} {{}}\n</style>",
]


def script_snippets() -> st.SearchStrategy[str]:
    return st.sampled_from(_SCRIPTS).map(lambda s: s.format(S=SENTINEL))


def text_script_snippets() -> st.SearchStrategy[str]:
    return st.sampled_from(_TEXT_SCRIPTS).map(lambda s: s.format(S=SENTINEL))


def _h(text: str) -> str:
    return html.escape(text, quote=False)


def _html_items(items: list[ItemModel], ordered: bool, scripts: list[str]) -> str:
    tag = "ol" if ordered else "ul"
    out = [f"<{tag}>"]
    for it in items:
        body = f"<strong>{_h(it.label)}:</strong> {_h(it.text)}" if it.label else _h(it.text)
        if scripts:
            body += scripts.pop()
        kids = _html_items(it.children, False, scripts) if it.children else ""
        out.append(f"<li>{body}{kids}</li>")
    out.append(f"</{tag}>")
    return "".join(out)


def _br_items(items: list[ItemModel], ordered: bool, depth: int = 0) -> list[str]:
    lines: list[str] = []
    for n, it in enumerate(items, 1):
        mark = f"{n}." if ordered else "•"
        text = f"{it.label}: {it.text}" if it.label else it.text
        lines.append("&nbsp;" * 4 * depth + f"{mark} {_h(text)}")
        lines.extend(_br_items(it.children, False, depth + 1))
    return lines


def render_html(
    page: PageModel,
    style: str,
    *,
    region: bool = True,
    chrome: bool = True,
    scripts: list[str] | None = None,
    charset: str = "utf-8",
) -> str:
    """The page as a site would write it in ``style``; ``scripts`` are planted between and inside blocks."""
    plant = list(scripts or [])
    body: list[str] = [f"<h1>{page.code} - {_h(page.title)}</h1>", f"<p>{page.code_line}</p>"]
    for sec in page.sections:
        if plant:
            body.append(plant.pop())
        head = _h(sec.heading)
        paras = "".join(f"<p>{_h(p)}</p>" for p in sec.paragraphs)
        items = _html_items(sec.items, sec.ordered, plant) if sec.items else ""
        if style == "h2":
            body.append(f"<h2>{head}</h2>{paras}{items}")
        elif style == "bold":
            body.append(f"<p><strong>{head}</strong></p>{paras}{items}")
        elif style == "dl":
            body.append(f"<dl><dt>{head}</dt><dd>{paras}{items}</dd></dl>")
        elif style == "details":
            body.append(f"<details open><summary>{head}</summary>{paras}{items}</details>")
        else:
            lines = [f"<b>{head}</b>", *(_h(p) for p in sec.paragraphs), *_br_items(sec.items, sec.ordered)]
            body.append(f'<div class="sec">{"<br>".join(lines)}</div>')
    if page.links:
        lis = "".join(f'<li><a href="{html.escape(h)}">{c} - {_h(t)}</a></li>' for h, c, t in page.links)
        body.append(f"<h2>Similar Codes</h2><ul>{lis}</ul>")
    body.extend(plant)
    content = "\n".join(body)
    if region:
        content = f"<main>\n{content}\n</main>"
    if chrome:
        content = (
            '<header><a href="/">Home</a></header><nav><ul><li><a href="/codes">Codes</a></li></ul></nav>\n'
            f'{content}\n<footer><p>About us</p><script>track("{SENTINEL}")</script></footer>'
        )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="{charset}">'
        f"<title>{page.code} | Codes</title><style>body{{margin:0}} .{SENTINEL}{{}}</style></head>\n"
        f"<body>\n{content}\n</body></html>\n"
    )


def _text_items(items: list[ItemModel], ordered: bool, style: str, depth: int = 0) -> list[str]:
    lines: list[str] = []
    for n, it in enumerate(items, 1):
        text = f"{it.label}: {it.text}" if it.label else it.text
        pad = "    " * depth
        if style == "blank":
            mark = f"{n}." if ordered else "•"
            lines.append(f"{pad}  {mark} {text}")
        else:
            lines.append(f"{pad}- {text}")
        lines.extend(_text_items(it.children, False, style, depth + 1))
    return lines


def render_text(page: PageModel, style: str, *, scripts: list[str] | None = None) -> str:
    """The page as a text rendering: "blank" (blank-line separated, • bullets) or "dense" ("- ")."""
    plant = list(scripts or [])
    sep = "\n\n" if style == "blank" else "\n"
    blocks = ["Search all medical codes", f"{page.code} - {page.title}", page.code_line]
    for sec in page.sections:
        if plant:
            blocks.append(plant.pop())
        blocks.append(sec.heading)
        blocks.extend(sec.paragraphs)
        if sec.items:
            blocks.append("\n".join(_text_items(sec.items, sec.ordered, style)))
    blocks.extend(plant)
    return sep.join(blocks) + "\n"


def render_markdown(page: PageModel, *, scripts: list[str] | None = None) -> str:
    plant = list(scripts or [])
    out = [f"# {page.code} - {page.title}", "", page.code_line, ""]

    def walk(items: list[ItemModel], depth: int, ordered: bool) -> None:
        for n, it in enumerate(items, 1):
            mark = f"{n}." if ordered else "-"
            text = f"**{it.label}:** {it.text}" if it.label else it.text
            out.append("    " * depth + f"{mark} {text}")
            walk(it.children, depth + 1, False)

    for sec in page.sections:
        if plant:
            out += [plant.pop(), ""]
        out += [f"## {sec.heading}", ""]
        for p in sec.paragraphs:
            out += [p, ""]
        walk(sec.items, 0, sec.ordered)
        out.append("")
    out.extend(plant)
    return "\n".join(out) + "\n"


# -- a rendered page and how it is handed to parse_page -------------------------------------------


@dataclass
class Case:
    """One input for ``parse_page``: bytes or str, the file path and sidecar fields it comes with."""

    content: bytes | str
    path: str | None
    meta: dict[str, Any]
    kind: str
    #: True when SENTINEL may only appear inside script/style elements that are intact
    scripts_intact: bool = True

    def __repr__(self) -> str:
        head = self.content[:300]
        return f"Case(kind={self.kind!r}, path={self.path!r}, meta={self.meta!r}, content[:300]={head!r})"


_EXT = {"html": ".html", "text": ".txt", "markdown": ".md"}


@st.composite
def where(draw: st.DrawFn, page: PageModel, kind: str) -> tuple[str | None, dict[str, Any]]:
    """How the page says which code it is: a coded file path, a sidecar, or only the page itself."""
    how = draw(st.sampled_from(["path", "sidecar", "page", "none"]))
    ext = _EXT[kind]
    if how == "path":
        return f"site/{page.system}/{page.code}{ext}", {}
    if how == "sidecar":
        return f"pages/page{ext}", {"code_system": page.system, "code": page.code}
    if how == "page":
        return f"pages/page{ext}", {}
    types = {"html": "text/html", "text": "text/plain", "markdown": "text/markdown"}
    return None, {"content_type": types[kind]}


@st.composite
def rendered_pages(draw: st.DrawFn, *, with_scripts: bool = True) -> Case:
    """A well-formed page in one of the real markup styles, scripts and styles planted in it."""
    page = draw(page_models())
    kind = draw(st.sampled_from(["html", "text", "markdown"]))
    n = draw(st.integers(0, 4)) if with_scripts else 0
    if kind == "html":
        scripts = [draw(script_snippets()) for _ in range(n)]
        text = render_html(
            page,
            draw(st.sampled_from(HTML_STYLES)),
            region=draw(st.booleans()),
            chrome=draw(st.booleans()),
            scripts=scripts,
        )
    else:
        scripts = [draw(text_script_snippets()) for _ in range(n)]
        if kind == "text":
            text = render_text(page, draw(st.sampled_from(TEXT_STYLES)), scripts=scripts)
        else:
            text = render_markdown(page, scripts=scripts)
    path, meta = draw(where(page, kind))
    return Case(text.encode("utf-8"), path, meta, kind)


# -- mutations --------------------------------------------------------------------------------------

HOSTILE_FRAGMENTS: list[bytes] = [
    b"<",
    b"</div>",
    b"<div>" * 300,
    b"<ul><li>" * 200,
    b"</li></ul>" * 50,
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b'<!DOCTYPE html [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    b"&a;&b;&amp;&lt;&#0;&#x0;&#xD800;&#1114112;&#99999999999;&nbsp",
    b'<!ENTITY xxe SYSTEM "file:///etc/passwd">&xxe;',
    b"\x00",
    b"\x00" * 20,
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3\x28\xa0\xa1\xe2\x82",
    b"\r",
    b"\r\n\r\n",
    "\u2028\u2029\u202e\u200b\ufeff".encode(),
    "e\u0301".encode() * 200,
    b"\t" * 100,
    b"<script>",
    b"</script>",
    b"<style>",
    b"<title>",
    b"<textarea>",
    b"<plaintext>",
    b"<?xml version='1.0' encoding='utf-16'?>",
    b'<meta charset="utf-16">',
    b'<meta charset="base64">',
    b'<meta http-equiv="Content-Type" content="text/html; charset=unicode_escape">',
    b'<a href="javascript:alert(1)">63190 - Similar thing</a>',
    b'<h2>Similar Codes</h2><ul><li><a href="http://[::1">63190 - Bad host</a></li></ul>',
    b'<div class="' + b"cookie " * 2000 + b'">',
    b'<p style="' + b"font-weight:bold;" * 500 + b'">',
    b"<h2>Summary</h2>" * 30,
    b"<li>" * 500,
    b"<table><tr><td>" * 50,
    b"\n- " * 300,
    b"\n  \xe2\x80\xa2 Label: " * 50,
    b"\n" + b" " * 400 + b"- deep",
    b"\n#######",
    b"\n# " + b"#" * 200,
    b"**" * 200,
    b"__" * 200,
    b"[" * 300 + b"](" * 300,
    b"`" * 301,
    b"\n```\n",
    b"\n---\n",
    b"|" * 300,
    b"\n" + b">" * 400 + b" quoted",
    b"\nSummary\n",
    b"\nSimilar Codes\n63190 ",
    b"Codes / HCPCS / ",
    b"(HCPCS Code: A4255)",
    b"CPT4 code\n",
    b"ICD-10-CM code\n",
    b"Name of the Condition:\n",
    b"9" * 400,
    b"A" * 5000,
]


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after 1-4 mutations: splice a hostile fragment, cut, duplicate, flip or truncate."""
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["splice", "splice", "splice", "cut", "dup", "flip", "truncate"]))
        n = len(data)
        at = draw(st.integers(0, n))
        if op == "splice":
            frag = draw(st.sampled_from(HOSTILE_FRAGMENTS) | st.binary(min_size=1, max_size=16))
            data = data[:at] + frag + data[at:]
        elif op == "cut" and n:
            end = draw(st.integers(at, min(n, at + 200)))
            data = data[:at] + data[end:]
        elif op == "dup" and n:
            end = draw(st.integers(at, min(n, at + 200)))
            data = data[:end] + data[at:end] * draw(st.integers(1, 20)) + data[end:]
        elif op == "flip" and n:
            i = min(at, n - 1)
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
        elif op == "truncate":
            data = data[:at]
    return data


@st.composite
def reencoded(draw: st.DrawFn, case: Case) -> Case:
    """The same page in another encoding: UTF-16 with BOM, cp1252 declared by meta, or latin-1 lies."""
    assert isinstance(case.content, bytes)
    text = case.content.decode("utf-8")
    how = draw(st.sampled_from(["utf-16", "utf-16-be-bom", "cp1252-meta", "cp1252-undeclared", "str"]))
    if how == "utf-16":
        data: bytes | str = text.encode("utf-16")
    elif how == "utf-16-be-bom":
        data = b"\xfe\xff" + text.encode("utf-16-be")
    elif how.startswith("cp1252"):
        text = text.replace("•", "\u2022")  # in cp1252 (0x95)
        if how == "cp1252-meta":
            text = text.replace('charset="utf-8"', 'charset="windows-1252"')
        data = text.encode("cp1252", "replace")
    else:
        data = text  # handed over as str
    return Case(data, case.path, case.meta, case.kind)


@st.composite
def hostile_pages(draw: st.DrawFn) -> Case:
    """Rendered pages, re-encoded or mutated (scripts no longer guaranteed intact), or raw noise."""
    choices = ["mutated", "mutated", "mutated", "reencoded", "noise-bytes", "noise-text"]
    choice = draw(st.sampled_from(choices))
    if choice.startswith("noise"):
        kind = draw(st.sampled_from(["html", "text", "markdown"]))
        path = draw(st.sampled_from([f"site/cpt/63185{_EXT[kind]}", f"x/noise{_EXT[kind]}", None]))
        content: bytes | str
        if choice == "noise-bytes":
            content = draw(st.binary(max_size=2000))
        else:
            content = draw(st.text(max_size=2000))
        return Case(content, path, {}, kind, scripts_intact=False)
    case = draw(rendered_pages())
    if choice == "reencoded":
        return draw(reencoded(case))
    assert isinstance(case.content, bytes)
    return Case(draw(mutate(case.content)), case.path, case.meta, case.kind, scripts_intact=False)


#: Hostile sidecar fields handed to parse_page as ``meta`` (the files layer type-checks real sidecars).
HOSTILE_META: list[dict[str, Any]] = [
    {},
    {"code_system": "cpt", "code": "../../etc/passwd"},
    {"code_system": "cpt", "code": "631\x0085"},
    {"code_system": "../cpt", "code": "63185"},
    {"code_system": 5, "code": ["63185"]},
    {"code": None, "url": 17},
    {"url": "https://example.org/code/cpt4/../../../etc/passwd"},
    {"url": "file:///etc/passwd"},
    {"url": "javascript:alert(1)//code/cpt4/63185"},
    {"url": "https://example.org/code/cpt4/63185%00.html"},
    {"url": "/absolute/code/hcpcs/E0114", "fetched_at": "not a date"},
    {"fetched_at": 10**30, "content_type": 3},
    {"fetched_at": -1e20, "content_type": "text/html; charset=base64"},
    {"content_type": "text/html; charset=utf-16"},
    {"content_type": "text/plain; charset=x-no-such-thing"},
    {"code_system": "cpt", "code": "63185" * 1000},
]


# -- invariants -------------------------------------------------------------------------------------

_STAGES = set(get_args(Stage))
_CONTROLS = set(map(chr, range(32))) - set("\t\n\r")


def _strings(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


def check_outcome(case: Case, parse: Any) -> ProcedureRecord | RejectedPage:
    """Run ``parse(case)`` and assert the contract: a sound record or a sound one-line reject."""
    try:
        record = parse(case)
    except RejectedPage as exc:
        reason = exc.reason
        assert isinstance(reason, str) and reason.strip(), f"empty reason: {exc!r}"
        assert "\n" not in reason and "\r" not in reason, f"reason is not one line: {reason!r}"
        assert len(reason) <= MAX_REASON, f"reason longer than {MAX_REASON}: {reason!r}"
        assert exc.stage in _STAGES, f"unknown stage {exc.stage!r}"
        assert not reason.startswith("internal error"), f"a bug surfaced as a reject: {reason} ({exc.detail})"
        return exc
    assert isinstance(record, ProcedureRecord)
    data = record.model_dump(mode="json")
    dumped = json.dumps(data, ensure_ascii=False)
    dumped.encode("utf-8")  # no lone surrogates: Parquet and JSON writers need valid UTF-8
    if case.scripts_intact:
        assert SENTINEL not in dumped, "script or style text reached the record"
    for sc in record.similar_codes:
        assert (
            sc.url is None
            or sc.url.split(":", 1)[0].lower() in ("http", "https")
            or ":" not in sc.url.split("/", 1)[0]
        ), f"a non-web link reached the record: {sc.url!r}"
    bad = sorted({c for s in _strings(data) for c in s if c in _CONTROLS})
    assert not bad, f"control characters {bad!r} in the record"
    return record


def printable(data: bytes | str, limit: int = 120) -> str:
    """A short, safe preview of page content for reports."""
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    return "".join(c if c in string.printable and c not in "\r\x0b\x0c" else "?" for c in text[:limit])


# -- targets: what the property tests and the harness run ------------------------------------------


def parse_case(case: Case) -> ProcedureRecord:
    from pipeline.api import parse_page

    return parse_page(case.content, path=case.path, meta=case.meta)


def check_page(case: Case) -> ProcedureRecord | RejectedPage:
    return check_outcome(case, parse_case)


def check_front_end(case: Case) -> None:
    """The front end alone, on decoded text: a Document (or a reasoned reject), scripts never in it."""
    from pipeline.parse.document import Document, ListBlock
    from pipeline.parse.html import parse_html
    from pipeline.parse.text import parse_markdown, parse_text

    text = case.content if isinstance(case.content, str) else case.content.decode("utf-8", "replace")
    front = {"html": parse_html, "text": parse_text, "markdown": parse_markdown}[case.kind]
    try:
        doc = front(text)
    except RejectedPage as exc:
        assert exc.reason and "\n" not in exc.reason, f"bad reason {exc.reason!r}"
        return
    assert isinstance(doc, Document)
    if case.scripts_intact:
        texts = [doc.title or "", doc.code_line or ""]
        stack: list[Any] = []
        for b in doc.blocks:
            if isinstance(b, ListBlock):
                stack.extend(b.items)
            else:
                texts.append(b.text)
        while stack:
            it = stack.pop()
            texts += [it.text, it.label or ""]
            stack.extend(it.children)
        assert not any(SENTINEL in t for t in texts), "script or style text reached the Document"


@st.composite
def pages_with_hostile_meta(draw: st.DrawFn) -> Case:
    case = draw(rendered_pages(with_scripts=False))
    meta = dict(draw(st.sampled_from(HOSTILE_META)))
    return Case(case.content, case.path, meta, case.kind)


@st.composite
def front_end_texts(draw: st.DrawFn) -> Case:
    """Decoded text for one front end: a rendered page (scripts intact), mutated, or random text."""
    how = draw(st.sampled_from(["rendered", "mutated", "mutated", "random"]))
    if how == "random":
        kind = draw(st.sampled_from(["html", "text", "markdown"]))
        alphabet = st.characters(codec="utf-8") | st.sampled_from(list("<>/&;#*-_[]()`|!\n \t•1."))
        return Case(draw(st.text(alphabet, max_size=1500)), None, {}, kind, scripts_intact=False)
    case = draw(rendered_pages())
    if how == "rendered":
        return case
    assert isinstance(case.content, bytes)
    data = draw(mutate(case.content))
    return Case(data.decode("utf-8", "replace"), None, {}, case.kind, scripts_intact=False)


#: name -> (strategy of cases, check of one case)
TARGETS: dict[str, tuple[st.SearchStrategy[Case], Any]] = {
    "rendered": (rendered_pages(), check_page),
    "hostile": (hostile_pages(), check_page),
    "meta": (pages_with_hostile_meta(), check_page),
    "front_ends": (front_end_texts(), check_front_end),
}
