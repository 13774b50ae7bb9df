"""gateway/edge.py's AnnouncingServer: it says where it listens only once the port is bound."""

from __future__ import annotations

import asyncio
import socket

import pytest
from starlette.applications import Starlette

from gateway.edge import AnnouncingServer, EdgeConfig, EdgeLimits

LIMITS = EdgeLimits(header_timeout=5.0, max_header_bytes=16384, max_connections=16)


def config(port: int) -> EdgeConfig:
    return EdgeConfig(
        Starlette(),
        edge_limits=LIMITS,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
    )


async def test_a_busy_port_is_never_announced() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        announced: list[bool] = []
        server = AnnouncingServer(config(busy.getsockname()[1]), lambda: announced.append(True))

        with pytest.raises(SystemExit) as exited:
            await server.serve()

    assert exited.value.code != 0
    assert announced == []


async def test_the_announcement_comes_once_the_port_accepts_connections() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connected: list[bool] = []

    def announce() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            connected.append(True)
        server.should_exit = True

    server = AnnouncingServer(config(port), announce)
    await asyncio.wait_for(server.serve(), timeout=20)

    assert connected == [True]
