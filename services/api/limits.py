"""The request gate: who may send a body, and how much, decided before any of it is read.

FastAPI reads a request's whole body (and spools a multipart upload to a temporary file)
before it runs the dependencies that check the token, and a route can only look at the size
once it has the body. So without this gate anyone could stream gigabytes to disk before
their 401, a declared ``Content-Length`` of 2**63 held the connection open, and the upload
limit was checked after the upload. This plain ASGI middleware runs first, on the headers:

1. **Authentication**: every request but the public ones (``/healthz``, the OpenAPI docs, a
   clip's media with a signed URL's ``expires``/``sig``) needs a valid bearer token (401
   ``unauthorized`` / ``invalid_token``). A video upload also needs an admin token (403
   ``admin_required``), so an annotator cannot stream a 2 GB file either. The token check is
   ``deps.identify``, the one the routes use; the identity is handed on in ``scope["state"]``
   so ``get_caller`` does not look the token up twice.
2. **Size**: a declared ``Content-Length`` over the limit is a 413 ``request_too_large`` at
   once (``upload_too_large`` for a video upload); a body without one (chunked) is counted
   as it streams and cut off with the same 413 the moment it crosses the limit. The limit is
   ``upload_max_bytes`` plus multipart framing for ``POST /api/v1/videos``,
   ``request_max_bytes`` for everything else.
3. **Stalls**: a body that sends nothing for ``request_idle_timeout_seconds`` gets 408
   ``request_timeout``.

An answer the gate gives before the body is complete says ``Connection: close``, so the
server drops the rest of the body instead of reading it. Once the gate has answered, the
route sees the client as gone and whatever it answers is dropped.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qs

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.deps import bearer_token, identify
from tagloop.auth import Identity, TokenCache
from tagloop.config import Settings
from tagloop.db.engine import make_session_factory
from tagloop.errors import TagloopError

log = logging.getLogger(__name__)

# Open without a token: liveness, and the API's own description.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# A clip's media opens with a signed URL instead of a token (services/api/signed_media.py
# checks the signature); only for reading.
SIGNED_MEDIA = re.compile(r"/api/v1/clips/[^/]+/media")
UPLOAD_PATH = "/api/v1/videos"
# Multipart framing around the file of an upload: boundaries and part headers.
MULTIPART_OVERHEAD = 64 * 1024


def is_upload(method: str, path: str) -> bool:
    return method == "POST" and path.rstrip("/") == UPLOAD_PATH


def body_limit(settings: Settings, *, upload: bool) -> int:
    """The most bytes a request's body may have."""
    return settings.upload_max_bytes + MULTIPART_OVERHEAD if upload else settings.request_max_bytes


def is_public(method: str, path: str, query_string: bytes) -> bool:
    """Whether a request may come without a token (its route checks what it needs)."""
    if path in PUBLIC_PATHS:
        return True
    if method in ("GET", "HEAD") and SIGNED_MEDIA.fullmatch(path):
        query = parse_qs(query_string.decode("latin-1"))
        return "sig" in query or "expires" in query
    return False


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The ``Content-Length`` header as a number (the server has checked it is digits)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def header_value(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str:
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return ""


def error_messages(status: int, code: str, message: str, *, close: bool) -> list[Message]:
    """A JSON error in the project's shape as the two ASGI messages that send it."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class RequestGateMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings, tokens: TokenCache) -> None:
        self.app = app
        self.settings = settings
        self.tokens = tokens

    def _identify(self, header: str) -> Identity:
        session = make_session_factory(self.settings.database_url)()
        try:
            return identify(header, tokens=self.tokens, session=session)
        finally:
            session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = scope["headers"]
        state = scope.setdefault("state", {})
        upload = is_upload(method, path)
        limit = body_limit(self.settings, upload=upload)
        if not is_public(method, path, scope.get("query_string", b"")):
            header = header_value(headers, b"authorization")
            try:
                # A token seen in the last seconds is in the cache; else the database lookup
                # runs in a thread, so the event loop serves others meanwhile.
                identity = self.tokens.cached(bearer_token(header))
                if identity is None:
                    identity = await anyio.to_thread.run_sync(self._identify, header)
            except TagloopError as exc:
                await self._reply(send, exc.http_status, exc.code, exc.message)
                return
            state["identity"], state["caller"] = identity, identity.name
            if upload and identity.role != "admin":
                await self._reply(send, 403, "admin_required", "this needs an admin token")
                return
        too_large = "upload_too_large" if upload else "request_too_large"
        what = "upload" if upload else "request body"
        declared = declared_length(headers)
        if declared is not None and declared > limit:
            await self._reply(
                send, 413, too_large, f"the {what} is larger than the limit of {limit} bytes"
            )
            return
        await self._forward(scope, receive, send, limit=limit, too_large=too_large, what=what)

    async def _reply(self, send: Send, status: int, code: str, message: str) -> None:
        for msg in error_messages(status, code, message, close=True):
            await send(msg)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, *, limit: int, too_large: str, what: str
    ) -> None:
        """Run the app with a ``receive`` that counts the body and times out a stall."""
        idle_s = self.settings.request_idle_timeout_seconds
        received = 0
        body_done = False
        started = False  # the app began its answer
        answered = False  # the gate answered instead of the app

        async def cut_off(status: int, code: str, message: str) -> Message:
            nonlocal answered
            if not started and not answered:
                answered = True
                for msg in error_messages(status, code, message, close=True):
                    await send(msg)
            return {"type": "http.disconnect"}

        async def gated_receive() -> Message:
            nonlocal received, body_done
            if body_done or answered:
                # After the body: a streamed response listens here for the client leaving,
                # for as long as it streams, so no timeout.
                return {"type": "http.disconnect"} if answered else await receive()
            with anyio.move_on_after(idle_s) as scope_:
                message = await receive()
            if scope_.cancelled_caught:
                return await cut_off(
                    408, "request_timeout", f"the {what} sent nothing for {idle_s:g} s"
                )
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    return await cut_off(
                        413, too_large, f"the {what} is larger than the limit of {limit} bytes"
                    )
                if not message.get("more_body", False):
                    body_done = True
            return message

        async def gated_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the gate answered already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, gated_receive, gated_send)
        except Exception:
            if not answered:
                raise
            # The route failed reading a body the gate cut off; the client has its answer.
            log.debug("route ended after the request gate answered", exc_info=True)
