"""Hostile files and paths: broken sidecars, hostile codes and URLs, odd file names, links out of raw.

None of them crashes the run, and none makes the pipeline read or write outside its raw and output
folders: a hostile code is a reject, never a path; store file names derived from URLs stay inside
the raw folder.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import RejectedPage
from pipeline.process import process_batch
from pipeline.sources.files import read_page
from pipeline.sources.store import RawStore, safe_name
from schemas import CODE_PATTERNS, ProcedureRecord

PAGE = """Search all medical codes

Spinal decompression

CPT4 code

Summary

The surgeon removes bone pressing on the nerves of the lower back.

Risks and Complications

  • Bleeding
"""
OUTSIDE_SECRET = "QXOUTSIDESECRETQX"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def one(raw: Path, rel: str) -> dict[str, object]:
    (result,) = process_batch([rel], str(raw))
    return result


def reject_of(result: dict[str, object]) -> dict[str, str]:
    assert "reject" in result, result
    reject = result["reject"]
    assert isinstance(reject, dict)
    reason = reject["reason"]
    assert reason and "\n" not in reason and not reason.startswith("internal error"), reason
    assert not any(ord(c) < 32 for c in reason), f"control character in {reason!r}"
    return reject


# -- broken sidecars --------------------------------------------------------------------------------

BROKEN_SIDECARS = {
    "invalid-json": ("{this is not json", "broken sidecar 63185.meta.json: invalid JSON"),
    "truncated": ('{"code": "631', "broken sidecar 63185.meta.json: invalid JSON"),
    "a-list": ("[1, 2, 3]", "broken sidecar 63185.meta.json: not a JSON object"),
    "a-string": ('"cpt"', "broken sidecar 63185.meta.json: not a JSON object"),
    "null": ("null", "broken sidecar 63185.meta.json: not a JSON object"),
    "code-as-number": ('{"code_system": "cpt", "code": 63185}', "broken sidecar 63185.meta.json: code:"),
    "url-as-list": ('{"url": ["https://example.org"]}', "broken sidecar 63185.meta.json: url:"),
    "nested-bomb": ("[" * 100_000 + "]" * 100_000, "broken sidecar 63185.meta.json:"),
    "huge": ('{"etag": "' + "x" * 100_000 + '"}', "broken sidecar 63185.meta.json: larger than"),
    "binary": (b"\x00\xff\xfe\x89PNG", "broken sidecar 63185.meta.json:"),
    "bad-utf8": (b'{"url": "\xff\xfe"}', "broken sidecar 63185.meta.json:"),
    "bad-sha": ('{"sha256": "../../etc/passwd"}', "broken sidecar 63185.meta.json: sha256:"),
}


@pytest.mark.parametrize("name", list(BROKEN_SIDECARS))
def test_a_broken_sidecar_is_a_read_reject_with_its_reason(tmp_path: Path, name: str) -> None:
    data, reason = BROKEN_SIDECARS[name]
    raw = tmp_path / "raw"
    write(raw / "cpt" / "63185.txt", PAGE)
    write(raw / "cpt" / "63185.meta.json", data)
    reject = reject_of(one(raw, "cpt/63185.txt"))
    assert reject["stage"] == "read"
    assert reject["reason"].startswith(reason), reject["reason"]


HOSTILE_CODES = [
    "../../etc/passwd",
    "/etc/passwd",
    "631\x0085",
    "63185\x00",
    "63185/../../x",
    "..\\..\\windows",
    "63185\n63190",
    "６３１８５",  # full-width digits
    "٦٣١٨٥",  # Arabic-Indic digits: \\d matches them, a code must not
    "63185" * 100,
    "",
    " ",
]


@pytest.mark.parametrize("code", HOSTILE_CODES)
def test_a_hostile_code_in_a_sidecar_is_a_reject_not_a_path(tmp_path: Path, code: str) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    write(raw / "cpt" / "63185.txt", PAGE)
    write(raw / "cpt" / "63185.meta.json", json.dumps({"code_system": "cpt", "code": code}))
    before = sorted(p for p in tmp_path.rglob("*"))
    result = one(raw, "cpt/63185.txt")
    if "record" in result:  # a blank code falls back to the path's code; full-width digits are digits
        assert unicodedata.normalize("NFKC", code).strip() in ("", "63185")
        assert result["record"]["code"] == "63185"  # type: ignore[index]
    else:
        reject = reject_of(result)
        assert reject["stage"] in ("read", "normalize")
        assert "code" in reject["reason"]
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not out.exists()


@pytest.mark.parametrize("system", ["../cpt", "/cpt", "cpt\x00", "CPT/../../x", "nonsense", "../../etc"])
def test_a_hostile_code_system_in_a_sidecar_is_a_reject_or_a_canonical_system(
    tmp_path: Path, system: str
) -> None:
    """Punctuation around a system name is forgiven ("../cpt" is cpt); anything else is a reject."""
    raw = tmp_path / "raw"
    write(raw / "pages" / "page.txt", PAGE)
    write(raw / "pages" / "page.meta.json", json.dumps({"code_system": system, "code": "63185"}))
    result = one(raw, "pages/page.txt")
    if "record" in result:
        assert result["record"]["code_system"] == "cpt"  # type: ignore[index]
        assert "".join(c for c in system.lower() if c.isalnum()) == "cpt"
    else:
        reject = reject_of(result)
        assert reject["stage"] in ("read", "normalize") and "code system" in reject["reason"]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/code/cpt4/../../../../etc/passwd",
        "https://example.org/code/cpt4/%2e%2e/%2e%2e/etc/passwd",
        "file:///etc/passwd",
        "/etc/passwd",
        "../../../../etc/passwd",
        "javascript:alert(1)",
        "https://example.org/code/cpt4/63185%00.html",
        "https://example.org/" + "a/" * 5000,
    ],
)
def test_a_hostile_sidecar_url_is_never_opened_and_never_becomes_a_path(tmp_path: Path, url: str) -> None:
    raw = tmp_path / "raw"
    write(raw / "pages" / "page.txt", PAGE)
    write(raw / "pages" / "page.meta.json", json.dumps({"url": url, "code_system": "cpt", "code": "63185"}))
    before = sorted(p for p in tmp_path.rglob("*"))
    result = one(raw, "pages/page.txt")
    if "reject" in result:
        reject_of(result)
    else:
        record = ProcedureRecord.model_validate(result["record"])
        assert record.record_id == "cpt:63185"
        assert "root:" not in record.model_dump_json()  # /etc/passwd was not read
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_a_sidecar_linked_to_a_file_outside_raw_is_not_read(tmp_path: Path) -> None:
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    write(raw / "cpt" / "63185.txt", PAGE)
    target = write(
        outside / "meta.json", json.dumps({"code_system": "cpt", "code": "63190", "etag": OUTSIDE_SECRET})
    )
    os.symlink(target, raw / "cpt" / "63185.meta.json")
    result = one(raw, "cpt/63185.txt")
    if "record" in result:
        assert result["record"]["record_id"] == "cpt:63185"  # type: ignore[index]
    else:
        assert "outside the raw folder" in reject_of(result)["reason"]


def test_a_page_linked_out_of_raw_or_named_outside_it_is_refused(tmp_path: Path) -> None:
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    secret = write(outside / "63185.txt", PAGE.replace("Bleeding", OUTSIDE_SECRET))
    write(raw / "in.txt", PAGE)
    os.symlink(secret, raw / "cpt_63185.txt")
    assert "outside the raw folder" in reject_of(one(raw, "cpt_63185.txt"))["reason"]
    assert reject_of(one(raw, "../outside/63185.txt"))["reason"].startswith("not under the raw folder")
    assert reject_of(one(raw, str(secret)))["reason"].startswith("not under the raw folder")
    with pytest.raises(RejectedPage, match="not under the raw folder"):
        read_page(raw / ".." / "outside" / "63185.txt", raw)


@pytest.mark.parametrize(
    "name",
    [
        "new\nline.txt",
        "tab\there.txt",
        "  spaces  .txt",
        "ünïcödé.txt",
        "-rf.txt",
        "semi;colon$(x).txt",
        "a" * 200 + ".txt",
    ],
)
def test_odd_file_names_are_read_and_reported_by_their_relative_path(tmp_path: Path, name: str) -> None:
    raw = tmp_path / "raw"
    write(raw / "cpt" / name, PAGE)
    result = one(raw, f"cpt/{name}")
    source = result["reject"]["source"] if "reject" in result else result["record"]["source"]["path"]  # type: ignore[index]
    assert source == f"cpt/{name}"


# -- file names derived from URLs (the raw store) -----------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    url=st.one_of(
        st.text(max_size=200),
        st.builds(
            lambda path, q: f"https://example.org/{path}{q}",
            st.lists(
                st.sampled_from(["..", ".", "code", "cpt4", "63185", "%2e%2e", "%00", "a b", "/", "\\", "~"]),
                max_size=8,
            ).map("/".join),
            st.sampled_from(["", "?x=../../etc", "?a=%2F..%2F"]),
        ),
    ),
    source=st.none() | st.sampled_from(["..", "/etc", "site", "", ".hidden", "a/b"]),
)
def test_store_file_names_from_any_url_stay_inside_the_raw_folder(
    tmp_path: Path, url: str, source: str | None
) -> None:
    store = RawStore(tmp_path / "raw", durable=False)
    stem = store.stem_for(url, source)
    assert not stem.is_absolute() and ".." not in stem.parts and all(p and p != "." for p in stem.parts)
    assert all("\x00" not in p and "/" not in p for p in stem.parts)
    assert (tmp_path / "raw" / stem).resolve().is_relative_to((tmp_path / "raw").resolve())


@pytest.mark.parametrize("text", ["..", ".", "", "/", "../../etc/passwd", "\x00", "a\x00b", ".hidden", "CON"])
def test_safe_name_never_yields_a_path_component_that_escapes(text: str) -> None:
    name = safe_name(text)
    assert (
        name
        and name not in (".", "..")
        and "/" not in name
        and "\x00" not in name
        and not name.startswith(".")
    )


def test_codes_that_reach_a_record_match_the_schema_pattern(tmp_path: Path) -> None:
    """Every code that becomes a record id is validated, so ids are safe to use in names downstream."""
    raw = tmp_path / "raw"
    for i, code in enumerate(["63185", "e0114", "0dtj4zz", " D2740 "]):
        write(raw / "p" / f"{i}.txt", PAGE)
        write(raw / "p" / f"{i}.meta.json", json.dumps({"code": code}))
    results = process_batch([f"p/{i}.txt" for i in range(4)], str(raw))
    for r in results:
        if "record" in r:
            rec = r["record"]
            assert CODE_PATTERNS[rec["code_system"]].match(rec["code"])  # type: ignore[index]


@pytest.mark.parametrize("code", ["63185\n", "٦٣١٨٥"])
def test_the_schema_refuses_codes_that_are_unsafe_as_file_names(code: str) -> None:
    """json/<system>/<code>.json is named by the record's code: the schema is the last line of defence."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ProcedureRecord(
            record_id=f"cpt:{code}",
            code_system="cpt",
            code=code,
            source={"sha256": "0" * 64},
            parser_version="x",
        )
