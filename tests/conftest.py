"""Shared test set-up: Prefect isolated in a temporary home, one Prefect test server per session,
and a small raw folder of pages we wrote ourselves (good pages in three formats, a duplicate, and
three bad inputs), plus a dataset published from it without Prefect.

Prefect reads its settings when it is first imported, so its environment is set here, when pytest
imports this file, before any test module can import Prefect; CLI subprocesses inherit it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="procpipe-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.pop("PREFECT_API_URL", None)  # tests never talk to a real server
os.environ.pop("PROCPIPE_DEBUG", None)


@pytest.fixture(scope="session", autouse=True)
def prefect_home() -> Iterator[Path]:
    """The session's throw-away PREFECT_HOME (its database and settings), removed at the end."""
    yield Path(_PREFECT_HOME)
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness(prefect_home: Path) -> Iterator[None]:
    """One temporary Prefect server (``prefect_test_harness``) for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_corpus(repo_root: Path) -> Path:
    """``../shared/corpus`` (real third-party pages, read at test time only), or skip."""
    corpus = repo_root.parent / "shared" / "corpus"
    if not (corpus / "expected.jsonl").is_file():
        pytest.skip(f"shared corpus not found at {corpus}: these tests need ../shared/corpus beside the repo")
    return corpus


# ---------------------------------------------------------------- sample pages (our own words)

GALLBLADDER_TXT = """\
Search all medical codes

Laparoscopic gallbladder removal

CPT4 code

Name of the Procedure:

Common name: Keyhole gallbladder surgery
Technical term: Laparoscopic cholecystectomy

Summary

The surgeon takes the gallbladder out through four small cuts in the belly, guided by a camera.

Indications

  • Gallstones that keep causing attacks of pain.
  • An inflamed or infected gallbladder.
  • Polyps in the gallbladder wall.

Preparation

  • Nothing to eat for 8 hours before the operation.
  • Blood thinners are paused as the team advises.

Procedure Description

  1. General anesthesia is given.
  2. The belly is filled with gas through a small port.
  3. The gallbladder is freed, clipped and lifted out.

Duration

Usually 1 to 2 hours.

Risks and Complications

  • Bleeding
  • Bile leak
  • Injury to the bile duct

Similar Codes
"""

CRUTCHES_HTML = """\
<!doctype html>
<html><head><meta charset="utf-8"><title>E0114 | Codes</title></head>
<body>
<nav><a href="/">Home</a> <a href="/codes">All codes</a></nav>
<main>
<h1>Underarm crutches, adjustable, pair</h1>
<p>HCPCS code</p>
<h2>Name of the Procedure</h2>
<p>Common names: Crutches, underarm crutches</p>
<h2>Summary</h2>
<p>A pair of height-adjustable crutches that take weight off an injured leg while walking.</p>
<h2>Indications</h2>
<ul><li>A broken ankle or foot.</li><li>Recovery after knee surgery.</li></ul>
<h2>Preparation</h2>
<ul><li>The crutches are set to the patient's height.</li>
<li>A therapist shows how to walk and climb stairs with them.</li></ul>
<h2>Duration</h2>
<p>Fitting takes about 15 to 30 minutes.</p>
</main>
<footer>Cookie settings | Privacy</footer>
</body></html>
"""

KNEE_MD = """\
# Knee arthroscopy with partial meniscus removal

CPT4 code

## Name of the Procedure

Knee scope with meniscectomy

## Summary

Through two small openings, a camera and fine tools trim a torn piece of the knee's cartilage cushion.

## Indications

- A torn meniscus that locks or catches the knee.
- Knee pain that physiotherapy did not relieve.

## Recovery

- Crutches for a few days.
- Exercises to rebuild strength over 4 to 6 weeks.
"""

GALLBLADDER_DUP_TXT = GALLBLADDER_TXT.replace("four small cuts", "four small incisions")

DIAGNOSIS_TXT = """\
Search all medical codes

Sprain of the ankle ligament

ICD-10-CM code

Name of the Condition:

Ankle sprain

Causes

  • Rolling the foot inward on uneven ground.

Symptoms

  • Swelling and bruising around the ankle.

Treatment Options

  • Rest, ice, compression and elevation.
"""

#: relative path -> file content; sidecars end with .meta.json
SAMPLE_PAGES: dict[str, str] = {
    "site/cpt/47562.txt": GALLBLADDER_TXT,
    "site/hcpcs/E0114.html": CRUTCHES_HTML,
    "site/cpt/29881.md": KNEE_MD,
    "mirror/cpt/47562.txt": GALLBLADDER_DUP_TXT,
    "mirror/cpt/47562.meta.json": json.dumps(
        {"url": "https://example.org/code/cpt4/47562-gallbladder", "fetched_at": "2030-01-02T03:04:05Z"}
    ),
    "bad/empty.txt": "",
    "bad/sprain.txt": DIAGNOSIS_TXT,
    "bad/cpt/99213.txt": GALLBLADDER_TXT.replace("Laparoscopic", "Office"),
    "bad/cpt/99213.meta.json": "{this is not json",
}
#: what the sample folder must publish
SAMPLE_COUNTS = {"inputs": 7, "records": 3, "rejects": 3, "duplicates": 1}
SAMPLE_RECORD_IDS = {"cpt:47562", "hcpcs:E0114", "cpt:29881"}


def write_pages(root: Path, pages: dict[str, str] = SAMPLE_PAGES) -> Path:
    for rel, text in pages.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def sample_raw(tmp_path: Path) -> Path:
    """A fresh raw folder holding ``SAMPLE_PAGES``."""
    return write_pages(tmp_path / "raw")


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An out folder with the sample pages published once (Prefect-free path), shared read-only."""
    from pipeline.process import run_local

    base = tmp_path_factory.mktemp("published")
    raw = write_pages(base / "raw")
    run_local(raw, base / "out", workers=1)
    return base / "out"
