"""GET /api/v1/me: the caller's name and role, for each role; 401 without a valid token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.api_helpers import ApiHarness, make_api

ME = "/api/v1/me"


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> ApiHarness:
    return make_api(tmp_path, db_url)


def test_me_names_the_admin(api: ApiHarness) -> None:
    r = api.client.get(ME, headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "root", "role": "admin"}


def test_me_names_the_annotator(api: ApiHarness) -> None:
    r = api.client.get(ME, headers=api.annotator)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "ann", "role": "annotator"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
        ({"Authorization": "Basic abc"}, "unauthorized"),
    ],
)
def test_me_needs_a_valid_token(api: ApiHarness, headers: dict[str, str], code: str) -> None:
    r = api.client.get(ME, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == code
