"""Serve the API: ``python -m services.api.serve`` (host, port and worker processes from the
TAGLOOP_* settings).

Why not plain ``uvicorn --workers N``: with several worker processes uvicorn (0.54) binds the
listening socket itself, without ``proto=IPPROTO_TCP``, and asyncio then leaves Nagle's
algorithm on for every accepted connection. Each response on a keep-alive connection goes out
as two writes, the second held back until the client's delayed ACK, about 40 ms later
(https://github.com/Kludex/uvicorn/issues/3149). Measured here: a sequential request took 8 ms
with one worker and 52 ms with two. The protocol below turns Nagle off per connection.
"""

from __future__ import annotations

import asyncio
import copy
import socket
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from tagloop.config import Settings, get_settings, make_files_private


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY set on the connection's socket."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus tagloop's loggers (the request lines of
    ``request_log.py``, errors with tracebacks) at ``level`` on stderr. uvicorn applies it in
    every worker process; uvicorn's own access log stays off (the request lines replace it).
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["tagloop"] = {
        "format": "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"
    }
    config["handlers"]["tagloop"] = {
        "formatter": "tagloop",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    for name in ("tagloop", "services"):  # tagloop.api.*, tagloop.pipeline.*, services.api.*
        config["loggers"][name] = {
            "handlers": ["tagloop"],
            "level": level.upper(),
            "propagate": False,
        }
    return config


def serve(settings: Settings) -> None:
    """Run the API until interrupted, ``settings.api_workers`` processes on one socket."""
    make_files_private()
    uvicorn.run(
        "services.api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_level="warning",
        log_config=log_config(settings.api_log_level),
        access_log=False,
        http=NoDelayH11Protocol,
    )


if __name__ == "__main__":
    serve(get_settings())
