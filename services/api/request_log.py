"""One log line per request, as ``key=value`` pairs on the ``tagloop.api.request`` logger::

    method=GET route=/api/v1/clips/{clip_id} status=200 ms=3.4 caller=ann

``route`` is the matched route's template, so ids do not make every line unique; a request
that matched no route logs ``route=-`` and its (quoted, shortened) path. ``caller`` is the
token's name once the auth dependency has run (``request.state.caller``), else ``-``. ``ms``
runs until the last byte of the body was handed to the server, so a streamed export counts
whole. The query string is never logged (signed media URLs carry their signature there).

A plain ASGI middleware, not ``BaseHTTPMiddleware``: no extra task or body copy per request,
and no database work; a line costs one ``logging`` call. Unhandled errors are logged with
their traceback by ``services.api.errors``; the request line then says ``status=500``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tagloop.api.request")

_MAX_VALUE = 200


def quote(value: str) -> str:
    """``value`` as is when it is one plain token, else JSON-quoted (no spaces, ``=``, quotes
    or control characters reach the line unescaped, so a path cannot forge a log line)."""
    value = value[:_MAX_VALUE]
    if value and value.isprintable() and not any(c in value for c in ' "=\\'):
        return value
    return json.dumps(value)


def route_template(scope: Scope) -> str | None:
    """The template of the route that handled ``scope`` (``/api/v1/clips/{clip_id}``)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def caller_of(scope: Scope) -> str | None:
    state: Any = scope.get("state")
    caller = state.get("caller") if isinstance(state, dict) else None
    return caller if isinstance(caller, str) else None


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped before one did
        # The handlers put the caller in request.state, which is this dict.
        scope.setdefault("state", {})

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            ms = (time.perf_counter() - start) * 1000
            route = route_template(scope)
            caller = caller_of(scope)
            line = (
                f"method={quote(scope.get('method', '-'))} "
                f"route={quote(route) if route else '-'} status={status} ms={ms:.1f} "
                f"caller={quote(caller) if caller else '-'}"
            )
            if route is None:
                line += f" path={quote(scope.get('path', ''))}"
            if error is not None:
                line += f" error={error}"
            log.info("%s", line)
