"""Hostile bytes and encodings: every page parses cleanly or is a reject with a one-line reason.

Empty and binary files, NUL bytes, invalid UTF-8, UTF-16 with a BOM, cp1252 declared by ``<meta
charset>``, declared charsets that are not text encodings, a DOCTYPE internal subset declaring
entities (never expanded, external ones never read), pages that are only script, and script/style
text that must never reach a record, whatever the markup.
"""

from __future__ import annotations

import html
import json
import random
import zlib
from pathlib import Path

import pytest

from pipeline.api import parse_page
from pipeline.errors import RejectedPage
from pipeline.parse.html import parse_html
from pipeline.parse.text import parse_markdown, parse_text
from schemas import ProcedureRecord

SECRET = "QXSCRIPTSECRETQX"

PAGE_HTML = """<!DOCTYPE html>
<html><head><meta charset="{charset}"><title>63185 | Codes</title></head>
<body><main>
<h1>63185 - Spinal decompression {title_extra}</h1>
<p>CPT4 code</p>
<h2>Summary</h2>
<p>The surgeon removes bone pressing on the nerves of the lower back {summary_extra}.</p>
<h2>Risks and Complications</h2>
<ul><li>Bleeding</li><li>Infection of the wound</li></ul>
</main></body></html>
"""

PAGE_TXT = """Search all medical codes

63185 - Spinal decompression

CPT4 code

Summary

The surgeon removes bone pressing on the nerves of the lower back.

Risks and Complications

  • Bleeding
  • Infection of the wound
"""


def html_page(charset: str = "utf-8", title_extra: str = "", summary_extra: str = "") -> str:
    return PAGE_HTML.format(charset=charset, title_extra=title_extra, summary_extra=summary_extra)


def record_of(content: bytes | str, path: str = "site/cpt/63185.html", **kw: object) -> ProcedureRecord:
    result = parse_page(content, path=path, **kw)  # type: ignore[arg-type]
    assert isinstance(result, ProcedureRecord)
    return result


def reject_of(content: bytes | str, path: str = "site/cpt/63185.html", **kw: object) -> RejectedPage:
    with pytest.raises(RejectedPage) as info:
        parse_page(content, path=path, **kw)  # type: ignore[arg-type]
    exc = info.value
    assert exc.reason and "\n" not in exc.reason and not exc.reason.startswith("internal error")
    return exc


def dumped(record: ProcedureRecord) -> str:
    return record.model_dump_json()


# -- empty and binary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"  ", b"\n\t \r\n", "\u00a0\u2003\n".encode(), b"\xef\xbb\xbf", b"\xff\xfe", b"\xef\xbb\xbf \n"],
    ids=["empty", "spaces", "newlines", "unicode-spaces", "utf8-bom-only", "utf16-bom-only", "bom-spaces"],
)
@pytest.mark.parametrize("path", ["site/cpt/63185.html", "site/cpt/63185.txt", "site/cpt/63185.md"])
def test_empty_and_whitespace_only_pages_are_empty_page_rejects(content: bytes, path: str) -> None:
    exc = reject_of(content, path)
    assert (exc.stage, exc.reason) == ("decode", "empty page (no text)")


def _png() -> bytes:
    raw = b"\x00" + b"\xff\x00\x00" * 4
    ihdr = b"\x00\x00\x00\x04\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + ihdr + zlib.compress(raw)


BINARIES = {
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)),
    "png": _png(),
    "gzip": b"\x1f\x8b\x08\x00" + zlib.compress(b"<html>" * 100),
    "zip": b"PK\x03\x04" + b"\x14\x00" * 50,
    "elf": b"\x7fELF\x02\x01\x01" + b"\x00" * 100,
    "random": random.Random(7).randbytes(8192),
    "random-no-nul": bytes(b or 1 for b in random.Random(8).randbytes(8192)),
    "utf16-without-bom": html_page().encode("utf-16-le"),
}


@pytest.mark.parametrize("name", list(BINARIES))
@pytest.mark.parametrize("path", ["site/cpt/63185.html", "site/cpt/63185.txt", None])
def test_binary_files_are_rejected_as_binary(name: str, path: str | None) -> None:
    exc = reject_of(BINARIES[name], path)  # type: ignore[arg-type]
    assert exc.stage == "decode"
    assert exc.reason.startswith("binary file, not a text or HTML page")


def test_a_few_nul_bytes_in_a_real_page_are_dropped_not_kept_and_not_fatal() -> None:
    page = html_page(summary_extra="and\x00 more\x00").encode().replace(b"Bleeding", b"Blee\x00ding")
    record = record_of(page)
    assert "\x00" not in dumped(record)
    assert "Bleeding" in record.risks
    assert record.summary is not None and "and more" in record.summary


def test_control_characters_never_reach_a_record() -> None:
    controls = "".join(map(chr, [1, 2, 7, 8, 0x1B, 0x7F]))
    record = record_of(html_page(summary_extra=controls).encode())
    assert not any(c in dumped(record) for c in controls)
    assert not any(c in json.dumps(record.model_dump(mode="json"), ensure_ascii=False) for c in controls)


@pytest.mark.parametrize(
    "content", ["plain ascii", "caf\u00e9 \u2019quoted\u2019", "\uff11\uff12 \ufeff \uf8ff"]
)
@pytest.mark.parametrize("stray", ["", "\x7f", "\x00", "\x1b", "\ufffd"])
def test_decoding_drops_exactly_the_stray_control_characters(content: str, stray: str) -> None:
    """Clean text comes back unchanged (characters whose UTF-8 starts with 0xEF included); one stray
    control character is dropped wherever it sits, while a replacement character is kept."""
    from pipeline.sources.decode import clean_text, decode_bytes

    text = f"{content}{stray} tail\n\tend\r\n"
    kept = text if stray == "\ufffd" else text.replace(stray, "")
    assert decode_bytes(text.encode("utf-8"), kind="text") == kept
    assert clean_text(text) == kept


def test_html_character_references_to_controls_and_surrogates_stay_valid_text() -> None:
    refs = "&#0; &#1; &#x8; &#xD800; &#xDFFF; &#1114112; &#99999999999; &#x1B;"
    record = record_of(html_page(summary_extra=refs).encode())
    text = json.dumps(record.model_dump(mode="json"), ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogates
    assert not any(chr(c) in text for c in (0, 1, 8, 0x1B))


# -- encodings -------------------------------------------------------------------------------------


def test_invalid_utf8_falls_back_without_mojibake_or_crash() -> None:
    page = html_page(summary_extra="caf\xe9").encode("utf-8").replace(b"caf\xc3\xa9", b"caf\xe9\xc3\x28")
    record = record_of(page)
    assert record.summary is not None and "caf" in record.summary
    dumped(record).encode("utf-8")


def test_a_utf8_page_with_a_few_broken_bytes_stays_utf8_not_cp1252_mojibake() -> None:
    page = (
        PAGE_TXT.replace("lower back.", "lower back \u2013 “quoted”.").encode() + b"\n\xe9\xff stray bytes\n"
    )
    record = record_of(page, "site/cpt/63185.txt")
    assert record.risks == ["Bleeding", "Infection of the wound"]  # "•" bullets were not garbled into "â€¢"
    assert record.summary is not None and "lower back \u2013 “quoted”." in record.summary


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be-bom", "utf-32", "utf-8-sig"])
@pytest.mark.parametrize("kind", ["html", "txt"])
def test_pages_with_a_byte_order_mark_decode_in_their_encoding(codec: str, kind: str) -> None:
    text = (
        html_page(title_extra="naïve “quoted”")
        if kind == "html"
        else PAGE_TXT.replace("Spinal decompression", "Spinal decompression naïve “quoted”")
    )
    data = b"\xfe\xff" + text.encode("utf-16-be") if codec == "utf-16-be-bom" else text.encode(codec)
    record = record_of(data, f"site/cpt/63185.{kind}")
    assert record.title is not None and "naïve “quoted”" in record.title
    assert "Bleeding" in record.risks


def test_utf16_page_with_a_bom_is_sniffed_as_html_without_a_file_extension() -> None:
    record = record_of(html_page().encode("utf-16"), path=None, meta={"code_system": "cpt", "code": "63185"})
    assert record.risks == ["Bleeding", "Infection of the wound"]


@pytest.mark.parametrize("charset", ["windows-1252", "cp1252", "iso-8859-1", "latin1", "us-ascii"])
def test_cp1252_declared_by_meta_charset_keeps_smart_quotes_and_accents(charset: str) -> None:
    page = html_page(charset=charset, title_extra="— “café” résumé").encode("cp1252")
    record = record_of(page)
    assert record.title is not None and "— “café” résumé" in record.title


def test_undeclared_cp1252_is_recognised_too() -> None:
    page = PAGE_TXT.replace("lower back", "lower back – “quoted”").encode("cp1252")
    record = record_of(page, "site/cpt/63185.txt")
    assert record.summary is not None and "lower back – “quoted”" in record.summary


@pytest.mark.parametrize(
    "charset", ["base64", "unicode_escape", "utf-7", "idna", "punycode", "x-no-such-charset", "undefined"]
)
def test_declared_charsets_that_are_not_text_encodings_are_ignored(charset: str) -> None:
    record = record_of(html_page(charset=charset, title_extra="café").encode())
    assert record.title is not None and "café" in record.title
    meta = {"content_type": f"text/html; charset={charset}"}
    record = record_of(html_page(title_extra="café").encode(), meta=meta)
    assert record.title is not None and "café" in record.title


def test_meta_charset_utf16_on_an_ascii_page_is_read_as_utf8() -> None:
    record = record_of(html_page(charset="utf-16", title_extra="café").encode())
    assert record.title is not None and "café" in record.title


def test_str_content_with_lone_surrogates_is_cleaned() -> None:
    record = record_of(html_page(title_extra="bad \ud800 half"))
    assert record.title is not None and "\ud800" not in record.title
    dumped(record).encode("utf-8")


# -- DOCTYPE entities: never expanded, external ones never read --------------------------------------

LAUGHS = "".join(f'<!ENTITY lol{i} "{"".join(f"&lol{i - 1};" for _ in range(10))}">' for i in range(1, 10))
BILLION_LAUGHS = (
    '<!DOCTYPE html [<!ENTITY lol0 "lol">' + LAUGHS + "]>\n"
    "<html><body><h1>63185 - Spinal decompression</h1><p>CPT4 code</p>"
    "<h2>Summary</h2><p>Start &lol9; end</p></body></html>"
)


@pytest.mark.parametrize("engine", ["bs4", "lxml"])
def test_billion_laughs_in_an_html_doctype_is_not_expanded(engine: str) -> None:
    doc = parse_html(BILLION_LAUGHS, engine=engine)
    texts = [getattr(b, "text", "") for b in doc.blocks]
    assert sum(len(t) for t in texts) < 1000
    assert not any("lollol" in t for t in texts)
    record = record_of(BILLION_LAUGHS.encode())
    assert "lollol" not in dumped(record) and len(dumped(record)) < 10_000


@pytest.mark.parametrize("engine", ["bs4", "lxml"])
def test_external_entities_and_dtds_are_never_read(tmp_path: Path, engine: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{SECRET} from the file system\n", encoding="utf-8")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak "{SECRET} from the dtd">', encoding="utf-8")
    page = (
        f'<!DOCTYPE html SYSTEM "{dtd.as_uri()}" [<!ENTITY xxe SYSTEM "{secret.as_uri()}">'
        f'<!ENTITY % ext SYSTEM "{dtd.as_uri()}"> %ext;]>\n'
        "<html><body><h1>63185 - Spinal decompression</h1><p>CPT4 code</p>"
        "<h2>Summary</h2><p>Start &xxe; &leak; end</p></body></html>"
    )
    doc = parse_html(page, engine=engine)
    assert not any(SECRET in getattr(b, "text", "") for b in doc.blocks)
    assert SECRET not in dumped(record_of(page.encode()))


# -- script and style never reach a record -------------------------------------------------------------

ONLY_SCRIPT = [
    f"<script>var a = '{SECRET}';</script>",
    f"<html><head><script>{SECRET}()</script><style>.{SECRET}{{}}</style></head><body></body></html>",
    f"<html><body><script>\n  document.write('<h2>Summary</h2><p>{SECRET}</p>');\n</script></body></html>",
    f"<script type='module'>import {{ x }} from './{SECRET}.js'</script><noscript>{SECRET}</noscript>",
    f"<script>{SECRET}",  # never closed: the rest of the page is script
]


@pytest.mark.parametrize("page", ONLY_SCRIPT)
@pytest.mark.parametrize("path", ["site/cpt/63185.html", "pages/unknown.html", None])
def test_pages_that_are_only_script_parse_cleanly_or_are_rejected_and_leak_nothing(
    page: str, path: str | None
) -> None:
    try:
        result = parse_page(page.encode(), path=path)
    except RejectedPage as exc:
        assert exc.reason and "\n" not in exc.reason and not exc.reason.startswith("internal error")
        assert SECRET not in exc.reason
        return
    assert SECRET not in dumped(result)
    assert result.sections == [] and result.preamble == []


SCRIPT_PLACES_HTML = [
    f"<h2>Summary <script>{SECRET}</script></h2><p>Text.</p>",
    f"<h2>Summary</h2><p>Text <script>{SECRET}</script> more.</p>",
    f"<h2>Risks</h2><ul><li>Bleeding <style>.{SECRET}{{}}</style></li><script>{SECRET}</script></ul>",
    f"<h2>Summary</h2><svg><script>{SECRET}</script><style>{SECRET}</style></svg><p>Text.</p>",
    f"<h2>Summary</h2><template><p>{SECRET}</p></template><p>Text.</p>",
    f"<h2>Summary</h2><p>Text.</p><script type='text/template'><h2>{SECRET}</h2></script>",
    f"<h2>Summary</h2><p>Text.</p><SCRIPT>{SECRET}</SCRIPT><STYLE>{SECRET}</STYLE>",
    f"<table><tr><td>x</td><script>{SECRET}</script></tr></table><h2>Summary</h2><p>Text.</p>",
    f"<h2>Summary</h2><dl><dt>Term<script>{SECRET}</script></dt><dd>Text.</dd></dl>",
]


@pytest.mark.parametrize("body", SCRIPT_PLACES_HTML)
@pytest.mark.parametrize("region", [True, False])
def test_script_and_style_text_never_reaches_a_record_anywhere_in_html(body: str, region: bool) -> None:
    inner = f"<h1>63185 - Spinal decompression</h1><p>CPT4 code</p>{body}"
    if region:
        inner = f"<main>{inner}</main>"
    page = f"<html><head><title>t</title></head><body>{inner}</body></html>"
    record = record_of(page.encode())
    assert SECRET not in dumped(record)


SCRIPT_PLACES_TEXT = [
    f"<script>{SECRET}</script>",
    f"Text before <script>var a = '{SECRET}';</script> and after.",
    f"<style>\n.{SECRET} {{ color: red }}\n</style>",
    f"<script type=\"text/javascript\">\n  window.x = '{SECRET}';\n  window.y = 1;\n</script>",
    f"<!-- {SECRET} -->",
    f"  • Bleeding <SCRIPT>{SECRET}</SCRIPT>",
    f"<script>{SECRET}\nnever closed\n",
]


@pytest.mark.parametrize("snippet", SCRIPT_PLACES_TEXT)
@pytest.mark.parametrize("kind", ["txt", "md"])
def test_script_and_style_text_never_reaches_a_record_from_markdown_or_text(snippet: str, kind: str) -> None:
    page = PAGE_TXT.replace("Risks and Complications\n", f"Risks and Complications\n\n{snippet}\n")
    if kind == "md":
        page = page.replace("\nSummary\n", "\n## Summary\n").replace("  • ", "- ")
    record = record_of(page.encode(), f"site/cpt/63185.{kind}")
    assert SECRET not in dumped(record)
    assert record.summary is not None and "lower back" in record.summary


def test_visible_text_next_to_a_script_is_kept() -> None:
    """Dropping scripts must not drop the page: text around them survives (the check above can fail)."""
    doc = parse_markdown(f"# T\n\nBefore <script>{SECRET}</script> after.\n")
    assert [getattr(b, "text", "") for b in doc.blocks] == ["Before after."]
    doc = parse_text(f"T\n\nBefore <style>{SECRET}</style> after.\n")
    assert [getattr(b, "text", "") for b in doc.blocks] == ["Before after."]


# -- links: script URLs and malformed hosts -------------------------------------------------------------


SIMILAR = (
    "<h1>63185 - Spinal decompression</h1><p>CPT4 code</p><h2>Summary</h2><p>Bone is removed.</p>"
    '<h2>Similar Codes</h2><ul><li><a href="{href}">63190 Laminectomy, one level</a></li></ul>'
)


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        " JaVaScRiPt:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>x</script>",
        "vbscript:msgbox",
        "http://[::1",
        "https://[zz]/x",
    ],
)
@pytest.mark.parametrize("url", [None, "https://example.org/code/cpt4/63185"])
def test_script_and_malformed_links_never_reach_a_record(href: str, url: str | None) -> None:
    record = record_of(SIMILAR.format(href=html.escape(href)).encode(), url=url)
    (similar,) = record.similar_codes
    assert similar.code == "63190" and similar.url is None


def test_web_links_are_kept_and_made_absolute() -> None:
    record = record_of(
        SIMILAR.format(href="/code/cpt4/63190").encode(), url="https://example.org/code/cpt4/63185"
    )
    assert record.similar_codes[0].url == "https://example.org/code/cpt4/63190"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)//code/cpt4/63185", "source URL is not a web address (javascript:)"),
        ("data:text/html,hello", "source URL is not a web address (data:)"),
        ("http://[::1/code/cpt4/63185", "malformed source URL (Invalid IPv6 URL)"),
    ],
)
def test_a_source_url_that_is_script_or_malformed_is_a_reject(url: str, reason: str) -> None:
    exc = reject_of(PAGE_TXT.encode(), "site/cpt/63185.txt", meta={"url": url})
    assert (exc.stage, exc.reason) == ("read", reason)
