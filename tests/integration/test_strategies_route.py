"""GET /api/v1/strategies: every registered strategy with what it needs, and which one ranks
the queue (the settings' default, or the one a deployment set)."""

from __future__ import annotations

from pathlib import Path

from tagloop.selection import list_strategies
from tests.integration.api_helpers import make_api

URL = "/api/v1/strategies"


def test_lists_every_strategy_and_marks_the_active_one(tmp_path: Path, db_url: str) -> None:
    api = make_api(tmp_path, db_url)
    r = api.client.get(URL, headers=api.annotator)  # any role may read it
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] == "balanced_cluster" and body["seed_batch_rule"] == "k_center"
    rows = {s["name"]: s for s in body["strategies"]}
    assert sorted(rows) == list_strategies()
    assert [name for name, s in rows.items() if s["active"]] == ["balanced_cluster"]
    assert rows["balanced_cluster"]["batch"] == "cluster_round_robin"
    assert rows["balanced_cluster"]["requires"] == ["tag_counts"]
    assert rows["entropy"]["batch"] == "k_center" and rows["entropy"]["requires"] == []
    assert rows["balanced_entropy"]["requires"] == ["tag_counts"]
    assert rows["bald"]["requires"] == ["mc_probs"]
    assert all(s["description"] for s in rows.values())


def test_follows_the_configured_strategy_and_needs_a_token(tmp_path: Path, db_url: str) -> None:
    api = make_api(tmp_path, db_url, selection_strategy="balanced_entropy")
    body = api.client.get(URL, headers=api.admin).json()
    assert body["active"] == "balanced_entropy"
    assert [s["name"] for s in body["strategies"] if s["active"]] == ["balanced_entropy"]
    assert api.client.get(URL).status_code == 401
