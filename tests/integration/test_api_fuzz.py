"""Property-based fuzzing of every API operation, read from the app's own OpenAPI document, on
SQLite and PostgreSQL, as an admin, an annotator and nobody (tests/integration/openapi_fuzz.py
draws the requests).

Each operation gets ``TAGLOOP_FUZZ_EXAMPLES`` requests (default 4, from a fixed seed,
``TAGLOOP_FUZZ_SEED``) per database and role: `make test` stays quick, and `make bench`
(``bench_api_fuzz``) runs the same with a larger budget. Every answer must be below 500,
every 4xx must be ``{"error": {"code", "message"}}``, and no body may pass
``MAX_RESPONSE_BYTES``. The database holds real rows (a video with clips, tags, labels, a
promoted model version with predictions, a job, a queue and the callers' own leases), and the
drawn path parameters hit their ids half the time, so routes are fuzzed past their lookups.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, seed, settings

from services.api.app import create_app
from tagloop.auth import create_token
from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db import queue as queue_repo
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Clip, Label, ModelVersion, Prediction
from tests.conftest import VIDEOS
from tests.integration.openapi_fuzz import (
    FuzzRequest,
    Operation,
    check_response,
    operations,
    request_for,
    send,
)
from tests.integration.test_labels import add_clips

EXAMPLES = int(os.environ.get("TAGLOOP_FUZZ_EXAMPLES", "4"))
SEED = int(os.environ.get("TAGLOOP_FUZZ_SEED", "20240520"))
MAX_RESPONSE_BYTES = 1 << 20
ROLES = ("admin", "annotator", "anonymous")
SMALL_VIDEO = VIDEOS / "bbb_vp8_vorbis_1s.webm"


@dataclass
class FuzzTarget:
    client: TestClient
    doc: dict[str, Any]
    auth: dict[str, dict[str, str]]  # role -> headers
    known: dict[str, list[Any]]  # path/query parameter name -> values of rows that exist
    errors: list[str]  # tracebacks of unhandled errors, from the API's log


class _Unhandled(logging.Handler):
    """Keeps the traceback of every error the API logs as unhandled (its 500s)."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


def seed_rows(db_url: str, lease_holders: dict[str, str]) -> dict[str, list[Any]]:
    """Real rows for the routes to find; the ids by parameter name."""
    clips = add_clips(db_url, 4)
    with session_scope(db_url) as s:
        version = ModelVersion(
            status="promoted",
            vocabulary=[{"name": "dog", "group": None}, {"name": "cat", "group": None}],
            config={"kind": "centralnet"},
            metrics={"score": 0.5},
            n_train=3,
            artifact_uri="models/v.pt",
        )
        s.add(version)
        s.flush()
        for clip_id in clips:
            s.add(
                Prediction(
                    clip_id=clip_id,
                    model_version_id=version.id,
                    top_tags=[{"tag": "dog", "p": 0.7}],
                    uncertainty=0.4,
                )
            )
        s.add(Label(clip_id=clips[0], annotator="root", tags=["dog"]))
        job = job_repo.create_job(s, kind="train", params={})
        queue_repo.replace_queue(
            s, items=[(c, "entropy", 1.0 - i / 10) for i, c in enumerate(clips)]
        )
        leases = [
            queue_repo.lease_next(s, annotator=name, lease_seconds=600).lease_id  # type: ignore[union-attr]
            for name in lease_holders.values()
        ]
        video_id, version_id, job_id = s.get_one(Clip, clips[0]).video_id, version.id, job.id
    return {
        "clip_id": clips,
        "video_id": [video_id],
        "version_id": [version_id],
        "job_id": [job_id],
        "lease_id": leases,
    }


@pytest.fixture
def target(tmp_path: Path, db_url: str) -> Iterator[FuzzTarget]:
    imports = tmp_path / "imports"
    imports.mkdir()
    (imports / "empty.mp4").write_bytes(b"")
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, import_roots=[imports])  # type: ignore[call-arg]
    upgrade_database(settings.database_url)
    with session_scope(settings.database_url) as s:
        admin = create_token(s, name="root", role="admin")
        annotator = create_token(s, name="ann", role="annotator")
    known: dict[str, list[Any]] = {
        **seed_rows(db_url, {"admin": "root", "annotator": "ann"}),
        # Body fields by name: values that pass validation and name rows that exist.
        "tags": [["dog"], ["cat", "dog"]],
        "none_apply": [True],
        "reason": ["unclear", "not_applicable"],
        "group": [None, "digit"],
        "path": [str(imports / "empty.mp4"), str(imports / "small.mp4")],
        "file": [SMALL_VIDEO.read_bytes()],
    }
    (imports / "small.mp4").write_bytes(SMALL_VIDEO.read_bytes())
    app = create_app(settings)
    errors: list[str] = []
    handler = _Unhandled(errors)
    api_log = logging.getLogger("tagloop.api")
    api_log.addHandler(handler)
    try:
        # 500s come back as responses (the app's own handler), not as raised exceptions.
        with TestClient(app, raise_server_exceptions=False) as client:
            for name, group in [("dog", None), ("cat", None), ("one", "digit")]:
                r = client.post(
                    "/api/v1/tags",
                    headers={"Authorization": f"Bearer {admin}"},
                    json={"name": name, "group": group},
                )
                assert r.status_code == 201, r.text
            yield FuzzTarget(
                client=client,
                doc=app.openapi(),
                auth={
                    "admin": {"Authorization": f"Bearer {admin}"},
                    "annotator": {"Authorization": f"Bearer {annotator}"},
                    "anonymous": {},
                },
                known=known,
                errors=errors,
            )
    finally:
        api_log.removeHandler(handler)


def ordered(ops: list[Operation]) -> list[Operation]:
    """DELETEs last: a deleted video takes its clips along, and every other route should
    still meet them."""
    return sorted(ops, key=lambda op: op.method == "delete")


def fuzz_operation(
    target: FuzzTarget, op_index: int, role: str, *, statuses: list[int] | None = None
) -> list[str]:
    """Run the budget of drawn requests against one operation; the failures found (and the
    statuses answered, into ``statuses``)."""
    op = ordered(operations(target.doc))[op_index]
    failures: list[str] = []
    statuses = [] if statuses is None else statuses

    @seed(SEED + op_index)
    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        # No shrinking: the server's state moves on between examples, so a shrunk case may
        # not fail again; every failing case is reported as drawn instead.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=request_for(op, target.doc, known=target.known))
    def run(request: FuzzRequest) -> None:
        before = len(target.errors)
        response = send(target.client, request, auth=target.auth[role])
        statuses.append(response.status_code)
        problems = check_response(response, max_bytes=MAX_RESPONSE_BYTES)
        for problem in problems:
            trace = "\n".join(target.errors[before:])[-3000:]
            failures.append(f"{op.key} as {role}: {problem}\n  {request.describe()}\n{trace}")

    run()
    return failures


@pytest.mark.integration
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_answers_cleanly(target: FuzzTarget, role: str) -> None:
    ops = ordered(operations(target.doc))
    assert len(ops) >= 30, [op.key for op in ops]  # the document lists the whole API
    answered: dict[str, list[int]] = {op.key: [] for op in ops}
    failures = [
        f
        for i, op in enumerate(ops)
        for f in fuzz_operation(target, i, role, statuses=answered[op.key])
    ]
    assert not failures, f"{len(failures)} bad answers:\n\n" + "\n\n".join(failures[:20])
    if role == "admin":  # the fuzz reaches the routes: most operations succeed sometimes
        succeeded = [k for k, v in answered.items() if any(200 <= s < 300 for s in v)]
        assert len(succeeded) >= len(ops) // 2, answered


def test_the_generator_is_hostile_and_covers_the_schema(tmp_path: Path) -> None:
    """The drawn requests include what the fuzzer claims to send: real ids, hostile ids,
    invalid UTF-8 in the URL, NUL, raw non-JSON bodies and every operation."""
    doc = create_app(Settings(data_dir=tmp_path)).openapi()
    known = {"clip_id": [7]}
    ops = {op.key: op for op in operations(doc)}
    assert "POST /api/v1/clips/{clip_id}/labels" in ops and "GET /healthz" in ops
    labels = ops["POST /api/v1/clips/{clip_id}/labels"]
    drawn: list[FuzzRequest] = []

    @seed(SEED)
    @settings(max_examples=300, database=None, deadline=None, phases=[Phase.generate])
    @given(request=request_for(labels, doc, known=known))
    def collect(request: FuzzRequest) -> None:
        drawn.append(request)

    collect()
    urls = [r.url for r in drawn]
    bodies = [r.content or b"" for r in drawn]
    assert any(u.startswith("/api/v1/clips/7/") for u in urls)
    assert any("%ED%A0%80" in u for u in urls)  # a lone surrogate, as invalid UTF-8
    assert any("%00" in u for u in urls)
    assert any(b"\\u0000" in b or b"\\ud800" in b for b in bodies)
    assert any(b"NaN" in b or b"Infinity" in b for b in bodies)
    assert any(b'"tags"' in b for b in bodies)
    assert any(len(b) > 50_000 for b in bodies)  # the deeply nested body


def test_the_check_flags_bad_answers() -> None:
    import httpx

    def answer(status: int, body: bytes, kind: str = "application/json") -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": kind})

    good = answer(404, b'{"error": {"code": "clip_not_found", "message": "no such clip"}}')
    assert check_response(good, max_bytes=1000) == []
    assert check_response(answer(200, b"[1]"), max_bytes=1000) == []
    assert check_response(answer(500, b'{"error": {"code": "x", "message": "y"}}'), max_bytes=99)
    assert check_response(answer(422, b'{"detail": "bad"}'), max_bytes=1000)
    assert check_response(answer(400, b"Bad request", "text/plain"), max_bytes=1000)
    assert check_response(answer(404, b'{"error": {"code": "", "message": "m"}}'), max_bytes=99)
    assert check_response(answer(200, b"x" * 2000, "text/plain"), max_bytes=1000)
    assert check_response(answer(200, b"{not json"), max_bytes=1000)
