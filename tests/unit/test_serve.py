"""The API server's connections have Nagle's algorithm off, also behind a socket bound the way
``uvicorn --workers N`` binds it (without proto=IPPROTO_TCP)."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from services.api.serve import NoDelayH11Protocol


async def _nodelay_of_accepted(protocol_class: type[H11Protocol]) -> int:
    """TCP_NODELAY of the server side of one connection accepted by ``protocol_class``."""

    async def app(scope: object, receive: object, send: object) -> None:  # never called
        raise AssertionError("no request is sent")

    config = uvicorn.Config(app, log_level="warning")
    config.load()
    state = ServerState()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as uvicorn binds
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: asyncio.Queue[int] = asyncio.Queue()

    class Spy(protocol_class):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            accepted.put_nowait(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Spy(config=config, server_state=state, app_state={}), sock=listener
    )
    _reader, writer = await asyncio.open_connection(*listener.getsockname())
    try:
        return await asyncio.wait_for(accepted.get(), timeout=5)
    finally:
        writer.close()
        server.close()


def test_plain_uvicorn_protocol_leaves_nagle_on_behind_a_prebound_socket() -> None:
    # The bug the server works around; if uvicorn fixes it, this fails and the workaround can go.
    assert asyncio.run(_nodelay_of_accepted(H11Protocol)) == 0


def test_api_protocol_turns_nagle_off() -> None:
    assert asyncio.run(_nodelay_of_accepted(NoDelayH11Protocol)) != 0
