"""The request gate (services/api/limits.py) against a real uvicorn process, over raw sockets:
refusals come from the headers, fast, before the body is read, and nothing reaches the disk.

Each answer must come within ``FAST_S``: a correctness bound (the old API answered after the
whole body, or not for 8-40 s), not a benchmark.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.stack_helpers import running_stack, stack_settings

FAST_S = 2.0
UPLOAD_MAX = 1024**2  # TAGLOOP_UPLOAD_MAX_BYTES for this test
REQUEST_MAX = 64 * 1024  # TAGLOOP_REQUEST_MAX_BYTES
IDLE_S = 1.0  # TAGLOOP_REQUEST_IDLE_TIMEOUT_SECONDS
HUGE_LENGTHS = [10**12, 2**31 + 1, 3 * 1024**3, 2**63]


@dataclass
class Gate:
    port: int
    admin: str
    data_dir: Path
    tmp_dir: Path


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def error_code(self) -> str:
        error = json.loads(self.body)["error"]
        assert isinstance(error["message"], str) and error["message"]
        return str(error["code"])


def disk_usage(*roots: Path) -> int:
    """Bytes in every file under ``roots``, the API's own logs left out."""
    total = 0
    for root in roots:
        for dirpath, _, files in os.walk(root):
            if Path(dirpath).name == "logs":
                continue
            total += sum((Path(dirpath) / f).stat().st_size for f in files)
    return total


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    tmp = tmp_path_factory.mktemp("gate")
    # Multipart uploads spool to the temp dir: point the API's at one the test can watch.
    tmp_dir = tmp / "tmp"
    tmp_dir.mkdir()
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_dir)
    settings = stack_settings(
        tmp,
        database_url=f"sqlite:///{tmp / 'tagloop.db'}",
        broker_url="",
        upload_max_bytes=UPLOAD_MAX,
        request_max_bytes=REQUEST_MAX,
        request_idle_timeout_seconds=IDLE_S,
    )
    try:
        with running_stack(settings, ["api"]):
            token = settings.admin_token_path.read_text().strip()
            yield Gate(settings.api_port, token, settings.data_dir, tmp_dir)
    finally:
        if old_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmp


def head(
    method: str, path: str, *, token: str | None = None, extra: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket, started: float, *, timeout_s: float) -> Answer:
    """One HTTP response (Content-Length framed, as every gate answer is)."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body, time.monotonic() - started)


def exchange(gate: Gate, request: bytes, *, body: bytes = b"", timeout_s: float = 10.0) -> Answer:
    """Send the request head (and ``body``, if any), then read the answer."""
    with socket.create_connection(("127.0.0.1", gate.port), timeout=timeout_s) as sock:
        started = time.monotonic()
        sock.sendall(request + body)
        return read_answer(sock, started, timeout_s=timeout_s)


MULTIPART = {"Content-Type": "multipart/form-data; boundary=x"}
# The start of an upload's multipart body: the file's bytes follow.
FILE_PART = (
    b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
    b"Content-Type: video/mp4\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_public_routes_stay_open(gate: Gate) -> None:
    answer = exchange(gate, head("GET", "/healthz"))
    assert answer.status == 200 and json.loads(answer.body) == {"status": "ok"}
    assert exchange(gate, head("GET", "/openapi.json")).status == 200
    # A signed media URL reaches its route without a token; a bad signature is its 403.
    answer = exchange(gate, head("GET", "/api/v1/clips/1/media?expires=1&sig=00"))
    assert answer.status == 403 and answer.error_code() == "invalid_signature"
    # Without the signature, the same path needs a token.
    answer = exchange(gate, head("GET", "/api/v1/clips/1/media"))
    assert answer.status == 401 and answer.error_code() == "unauthorized"


def test_an_upload_without_a_token_is_refused_before_its_body(gate: Gate) -> None:
    """The attack: 500 MB with no token was written to disk before the 401."""
    before = disk_usage(gate.data_dir, gate.tmp_dir)
    extra = {**MULTIPART, "Content-Length": str(500 * 2**20)}
    for token in (None, "tl_made_up"):
        with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(head("POST", "/api/v1/videos", token=token, extra=extra))
            answer = read_answer(sock, started, timeout_s=10)
            assert answer.status == 401, answer
            assert answer.error_code() == ("unauthorized" if token is None else "invalid_token")
            assert answer.seconds < FAST_S, answer
            assert answer.headers.get("connection") == "close"
            # The server has stopped listening: the body goes nowhere.
            try:
                for _ in range(64):
                    sock.sendall(FILE_PART + b"A" * 2**20)
            except OSError:
                pass
    time.sleep(0.5)
    assert disk_usage(gate.data_dir, gate.tmp_dir) == before


@pytest.mark.parametrize("length", HUGE_LENGTHS)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/v1/videos"), ("POST", "/api/v1/import/label-studio")]
)
def test_a_huge_declared_length_is_answered_at_once(
    gate: Gate, method: str, path: str, length: int
) -> None:
    """No body follows the headers: the answer must not wait for one."""
    extra = {"Content-Type": "application/json", "Content-Length": str(length)}
    answer = exchange(gate, head(method, path, extra=extra))
    assert (answer.status, answer.error_code()) == (401, "unauthorized")
    assert answer.seconds < FAST_S
    answer = exchange(gate, head(method, path, token=gate.admin, extra=extra))
    code = "upload_too_large" if path == "/api/v1/videos" else "request_too_large"
    assert (answer.status, answer.error_code()) == (413, code), answer
    assert answer.seconds < FAST_S
    assert answer.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("path", "limit", "code"),
    [
        ("/api/v1/videos", UPLOAD_MAX, "upload_too_large"),
        ("/api/v1/import/label-studio", REQUEST_MAX, "request_too_large"),
    ],
)
def test_a_chunked_body_is_cut_off_when_it_crosses_the_limit(
    gate: Gate, path: str, limit: int, code: str
) -> None:
    """No Content-Length: the gate counts. Twice the limit is sent and the body never ends;
    the 413 must come anyway (the old API waited for the end of the body)."""
    before = disk_usage(gate.data_dir, gate.tmp_dir)
    extra = {**MULTIPART, "Transfer-Encoding": "chunked"}
    with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as sock:
        sock.sendall(head("POST", path, token=gate.admin, extra=extra) + chunk(FILE_PART))
        piece = b"B" * 16_384
        sent = 0
        try:
            while sent <= 2 * limit and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk(piece))
                sent += len(piece)
        except OSError:  # the server answered and closed while this was sending
            pass
        started = time.monotonic()
        answer = read_answer(sock, started, timeout_s=10)
    assert (answer.status, answer.error_code()) == (413, code), answer
    assert answer.seconds < FAST_S
    time.sleep(0.5)
    assert disk_usage(gate.data_dir, gate.tmp_dir) == before


def test_a_body_within_the_limit_still_reaches_its_route(gate: Gate) -> None:
    body = json.dumps({"tasks": []}).encode()
    extra = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    answer = exchange(
        gate, head("POST", "/api/v1/import/label-studio", token=gate.admin, extra=extra), body=body
    )
    assert answer.status == 422 and answer.error_code() == "invalid_label_studio_export"
    # Chunked, too.
    extra = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    answer = exchange(
        gate,
        head("POST", "/api/v1/import/label-studio", token=gate.admin, extra=extra),
        body=chunk(body) + b"0\r\n\r\n",
    )
    assert answer.status == 422 and answer.error_code() == "invalid_label_studio_export"


@pytest.mark.parametrize(
    ("path", "content_type", "start"),
    [
        ("/api/v1/videos", MULTIPART["Content-Type"], FILE_PART + b"\x00\x00"),
        ("/api/v1/tags", "application/json", b'{"na'),
    ],
)
def test_a_stalled_body_times_out(gate: Gate, path: str, content_type: str, start: bytes) -> None:
    """A body that stops half way (the old API waited for it as long as the client liked)."""
    extra = {"Content-Type": content_type, "Content-Length": "10000"}
    answer = exchange(gate, head("POST", path, token=gate.admin, extra=extra), body=start)
    assert (answer.status, answer.error_code()) == (408, "request_timeout"), answer
    assert IDLE_S <= answer.seconds < IDLE_S + FAST_S


def test_an_annotator_cannot_stream_an_upload(gate: Gate) -> None:
    from tagloop.auth import create_token
    from tagloop.db.engine import session_scope

    with session_scope(f"sqlite:///{gate.data_dir.parent / 'tagloop.db'}") as s:
        token = create_token(s, name="ann", role="annotator")
    extra = {**MULTIPART, "Content-Length": str(2**30)}
    answer = exchange(gate, head("POST", "/api/v1/videos", token=token, extra=extra))
    assert (answer.status, answer.error_code()) == (403, "admin_required")
    assert answer.seconds < FAST_S
