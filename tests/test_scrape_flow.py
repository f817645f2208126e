"""The Prefect flows of the scraper under the session's ``prefect_test_harness``: ``scrape`` with its run
artifact, and ``refresh`` (every configured source, then the processing flow) into published records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrape_site import FixtureSite

from schemas import Manifest

FAST: dict[str, Any] = {
    "rate": 2000.0,
    "concurrency": 4,
    "timeout": 0.5,
    "retries": 1,
    "backoff_base": 0.01,
    "durable": False,
}


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as s:
        yield s


def _artifacts(flow_run_id: object) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


def test_scrape_flow_returns_the_summary_and_publishes_a_run_artifact(
    prefect_harness: None, site: FixtureSite, tmp_path: Path
) -> None:
    from pipeline.flows_scrape import scrape

    urls = [site.url(p.path) for p in site.pages[:4]] + [site.fault_url("missing"), site.fault_url("private")]
    state = scrape(
        urls=urls, raw_dir=str(tmp_path / "raw"), source="fixture", settings=FAST, return_state=True
    )
    assert state.is_completed()
    out = state.result()
    assert out["summary"]["fetched"] == 4 and out["summary"]["disallowed"] == 1
    assert [f["url"] for f in out["summary"]["failed"]] == [site.fault_url("missing")]
    assert out["slowest_hosts"][0]["host"] == "127.0.0.1"
    assert len(list((tmp_path / "raw" / "fixture" / "cpt4").glob("*.html"))) == 4

    artifact = _artifacts(state.state_details.flow_run_id)["scrape-summary"]
    assert "| fixture | 4 | 0 | 0 | 1 | 1 |" in artifact.data
    assert site.fault_url("missing") in artifact.data and "HTTP 404" in artifact.data
    assert "Slowest hosts" in artifact.data and "127.0.0.1" in artifact.data


def test_refresh_scrapes_every_source_then_processes_the_raw_store(
    prefect_harness: None, site: FixtureSite, tmp_path: Path
) -> None:
    from pipeline.flows_scrape import refresh

    fast = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in FAST.items())
    cfg = tmp_path / "sources.toml"
    cpt = json.dumps([site.url(p.path) for p in site.pages[:5]])
    hcpcs = json.dumps([site.url(p.path) for p in site.pages[200:203]])
    cfg.write_text(
        f"[defaults]\n{fast}\n\n"
        f'[[sources]]\nname = "cpt"\nurls = {cpt}\n\n'
        f'[[sources]]\nname = "hcpcs"\nurls = {hcpcs}\n'
    )
    raw, out = tmp_path / "raw", tmp_path / "processed"
    state = refresh(config=str(cfg), raw_dir=str(raw), out_dir=str(out), return_state=True)
    assert state.is_completed()
    result = state.result()
    assert {name: r["summary"]["fetched"] for name, r in result["sources"].items()} == {"cpt": 5, "hcpcs": 3}
    manifest = result["processed"]
    assert isinstance(manifest, Manifest)
    assert manifest.counts.inputs == 8 and manifest.counts.records == 8

    artifact = _artifacts(state.state_details.flow_run_id)["refresh-scrape"]
    assert "| cpt | 5 |" in artifact.data and "| hcpcs | 3 |" in artifact.data
