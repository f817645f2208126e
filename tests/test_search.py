"""Full-text search: built at publish time into every version, ranked BM25 with stemming, phrases,
prefixes and codes; ``pipeline.search`` and ``procpipe search`` (rich list or ``--json``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from published_versions import corpus_version

import pipeline
from pipeline.cli import main
from pipeline.publish import read_manifest
from pipeline.publish.extras import file_entry
from pipeline.search import parse_query, search


@pytest.fixture(scope="module")
def corpus_out(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus_version(shared_corpus, tmp_path_factory.getbasetemp())


def codes(hits: list[dict[str, object]]) -> list[str]:
    return [str(h["code"]) for h in hits]


# ---------------------------------------------------------------- real pages (../shared/corpus)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("blood glucose test strips", "A4253"),  # a device by its everyday name
        ("colonoscopy screening", "G0121"),  # a screening test by its common name ("Screening Colonoscopy")
        ("pap smear", "88150"),  # the common name of a cytopathology code
        ("knee brace", "K0901"),  # "Knee Brace" for a knee orthosis
        ("talk therapy", "90832"),
        ("cataract surgery", "66984"),
        ("cortisone shot", "J3303"),
    ],
)
def test_plain_words_find_a_real_procedure_in_the_top_three(
    corpus_out: Path, query: str, expected: str
) -> None:
    top = codes(search(query, limit=3, out_dir=corpus_out))
    assert expected in top, (query, top)


def test_a_code_typed_as_the_query_comes_first(corpus_out: Path) -> None:
    for query, code in [("63185", "63185"), ("A4253", "A4253"), ("a4253", "A4253"), ("cpt:63185", "63185")]:
        hits = search(query, out_dir=corpus_out)
        assert hits[0]["code"] == code, query
        assert hits[0]["snippet"].startswith(f"**{code}**")
        assert all(hits[0]["score"] > h["score"] for h in hits[1:])
    assert search("hcpcs:63185", out_dir=corpus_out) == []  # the system part must agree


def test_a_phrase_matches_words_in_order_only(corpus_out: Path) -> None:
    phrase = search('"spinal stenosis"', limit=20, out_dir=corpus_out)
    assert {"63015", "63185"} <= set(codes(phrase))
    assert all("**spinal" in h["snippet"].lower() for h in phrase)
    assert "**spinal stenosis**" in phrase[0]["snippet"].lower()  # the phrase is one marked hit
    assert search('"stenosis spinal"', out_dir=corpus_out) == []


def test_a_prefix_query_matches_longer_words(corpus_out: Path) -> None:
    hits = codes(search("laminec*", limit=20, out_dir=corpus_out))
    assert {"63015", "63185", "63265"} <= set(hits)
    assert search("laminec", out_dir=corpus_out) == []  # without the star, a whole word is wanted


def test_system_filter_keeps_one_code_system(corpus_out: Path) -> None:
    everything = search("colonoscopy", limit=20, out_dir=corpus_out)
    assert {h["code_system"] for h in everything} == {"cpt", "hcpcs"}
    hcpcs = search("colonoscopy", system="hcpcs", limit=20, out_dir=corpus_out)
    assert hcpcs and {h["code_system"] for h in hcpcs} == {"hcpcs"}
    assert codes(search("colonoscopy", system="CPT4", limit=20, out_dir=corpus_out)) == [
        h["code"] for h in everything if h["code_system"] == "cpt"
    ]


# ---------------------------------------------------------------- our sample pages


def test_stemming_finds_other_forms_of_a_word(published: Path) -> None:
    assert codes(search("gallstone", out_dir=published)) == ["47562"]  # the page says "Gallstones"
    assert codes(search("crutch", out_dir=published)) == ["E0114", "29881"]  # "Crutches" on both pages
    assert "29881" in codes(search("trimming cushions", out_dir=published))  # "trim", "cushion"


def test_names_technical_terms_and_section_text_are_all_searched(published: Path) -> None:
    assert codes(search("keyhole", out_dir=published)) == ["47562"]  # a common name
    assert codes(search("cholecystectomy", out_dir=published)) == ["47562"]  # the technical term
    assert codes(search("bile leak", out_dir=published)) == ["47562"]  # a risk list item
    assert codes(search("physiotherapy", out_dir=published)) == ["29881"]  # an indication


def test_hits_carry_system_code_title_marked_snippet_and_score(published: Path) -> None:
    (hit,) = search("keyhole", out_dir=published)
    assert set(hit) == {"code_system", "code", "title", "snippet", "score"}
    assert (hit["code_system"], hit["code"], hit["title"]) == (
        "cpt",
        "47562",
        "Laparoscopic gallbladder removal",
    )
    assert "**Keyhole**" in hit["snippet"]
    assert "\n" not in hit["snippet"]
    assert isinstance(hit["score"], float) and hit["score"] > 0
    (marked,) = search("keyhole", out_dir=published, marks=("<mark>", "</mark>"))
    assert "<mark>Keyhole</mark>" in marked["snippet"]


def test_records_holding_every_word_rank_before_records_holding_some(published: Path) -> None:
    hits = search("knee surgery crutches", out_dir=published)
    # only the crutches page holds all three words ("Recovery after knee surgery")
    assert codes(hits)[0] == "E0114"
    assert "29881" in codes(hits)  # the knee page holds "knee" and "crutches", and follows
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert codes(search("knee OR gallbladder", out_dir=published, limit=10)).count("47562") == 1


def test_the_code_query_works_on_the_samples_too(published: Path) -> None:
    assert codes(search("47562", out_dir=published))[0] == "47562"
    assert codes(search("e0114", out_dir=published))[0] == "E0114"
    assert codes(search("29881", system="hcpcs", out_dir=published)) == []


@pytest.mark.parametrize(
    "query",
    ['"', "NEAR(knee", "title:knee", "*", "AND", ") OR (", "-knee", 'kn"ee', "OR knee OR", "  ", "::"],
)
def test_query_syntax_never_raises(published: Path, query: str) -> None:
    assert isinstance(search(query, out_dir=published), list)


def test_parse_query_quotes_every_term() -> None:
    assert parse_query('spinal "nerve root" lamin* OR disc') == (
        ['"spinal"', '"nerve root"', '"lamin"* OR "disc"'],
        True,
    )
    assert parse_query("title:knee -x") == (['"title:knee"', '"-x"'], False)


def test_limit_caps_the_hits(published: Path) -> None:
    assert len(search("the", limit=2, out_dir=published)) == 2
    with pytest.raises(ValueError, match="limit"):
        search("knee", limit=0, out_dir=published)
    with pytest.raises(ValueError, match="unknown code system 'icd10cm'"):
        search("knee", system="icd10cm", out_dir=published)


def test_the_index_is_a_versioned_file_listed_in_the_manifest(published: Path) -> None:
    version = published / "latest"
    entry = read_manifest(version).files["search.sqlite"]
    assert entry == file_entry(version / "search.sqlite", 3, fsync=False)
    assert sorted(p.name for p in version.iterdir() if p.name.startswith("search.")) == ["search.sqlite"]


def test_a_version_without_an_index_says_so_in_one_line(published: Path, tmp_path: Path) -> None:
    run_id = read_manifest(published / "latest").run_id
    old = tmp_path / "versions" / run_id
    shutil.copytree(published / "versions" / run_id, old)
    (old / "search.sqlite").unlink()
    (tmp_path / "LATEST").write_text(run_id + "\n")
    with pytest.raises(FileNotFoundError, match=r"has no search\.sqlite .*publish a new version") as err:
        search("knee", out_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_package_attribute_is_callable_before_and_after_the_module_is_imported(published: Path) -> None:
    import pipeline.search as module

    assert codes(pipeline.search("keyhole", out_dir=published)) == ["47562"]
    assert codes(module("keyhole", out_dir=published)) == ["47562"]


# ---------------------------------------------------------------- the command line


def test_cli_json_prints_exactly_the_hits(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "knee", "--out-dir", str(published), "--json", "--limit", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == search("knee", out_dir=published, limit=1)


def test_cli_lists_hits_readably(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "bile leak", "--out-dir", str(published)]) == 0
    out = capsys.readouterr().out
    assert "1. CPT 47562" in out and "Laparoscopic gallbladder removal" in out
    assert "bile" in out.lower() and "\x02" not in out


def test_cli_exit_codes(published: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "zzzyzx", "--out-dir", str(published)]) == 0
    assert "no records match 'zzzyzx'" in capsys.readouterr().err
    assert main(["search", "knee", "--system", "icd10cm", "--out-dir", str(published)]) == 2
    assert main(["search", " ", "--out-dir", str(published)]) == 2
    assert main(["search", "knee", "--out-dir", str(tmp_path)]) == 1
    assert "nothing published" in capsys.readouterr().err


def test_cli_runs_as_a_program(published: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "search", "47562", "--json", "--out-dir", str(published)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["code"] == "47562"


def test_the_index_fed_while_publishing_equals_one_built_from_procedures_jsonl(
    published: Path, tmp_path: Path
) -> None:
    import sqlite3

    from pipeline.publish.search_index import INDEX_FILE, build_index

    version = published / "latest"
    rebuilt = tmp_path / INDEX_FILE
    assert build_index(version / "procedures.jsonl", rebuilt) == 3

    def dump(path: Path) -> list[str]:
        db = sqlite3.connect(path)
        try:
            return list(db.iterdump())
        finally:
            db.close()

    assert dump(version / INDEX_FILE) == dump(rebuilt)
