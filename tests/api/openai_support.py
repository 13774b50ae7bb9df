"""The gateway on a real loopback socket, for tests that drive it with the real ``openai`` SDK.

Recent ``openai`` releases ship their own HTTP stack, so respx cannot intercept them: the app
(with its lifespan: store, scheduler, providers) is served with uvicorn on 127.0.0.1 in the
test's own event loop, its URL also the app's public URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import uvicorn

from gateway.app import Gateway, create_app
from gateway.catalog import Catalog
from tests.conftest import KEY_A, make_settings


@dataclass
class Served:
    url: str
    gateway: Gateway

    def sdk(self, api_key: str = KEY_A, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=api_key, **kwargs)


@contextlib.asynccontextmanager
async def serve_gateway(
    tmp_path: Path, catalog: Catalog | None = None, **overrides: Any
) -> AsyncIterator[Served]:
    """The gateway app on a real loopback socket whose URL is also the app's public URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(make_settings(tmp_path, public_url=url, **overrides), catalog=catalog)
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the gateway stopped while starting")
            await asyncio.sleep(0.005)
        yield Served(url, app.state.gateway)
    finally:
        server.should_exit = True
        await task
        sock.close()
