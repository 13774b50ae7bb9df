"""The browser tests' pieces: a gateway on a real loopback port, and a headless Chromium.

The browser tests need Debian's ``chromium`` (``/usr/bin/chromium``, or ``BACKSERV_CHROMIUM``)
and Playwright's Python package; Playwright never downloads a browser of its own here. Without
them the tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gateway.app import Gateway, create_app
from tests.conftest import make_settings

# read at import: tests/conftest.py clears BACKSERV_* variables before each test
CHROMIUM = os.environ.get("BACKSERV_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("BACKSERV_SCREENSHOTS") == "1"
#: a browser test module's mark: its tests share one event loop, so they share one Chromium
BROWSER_LOOP = pytest.mark.asyncio(loop_scope="module")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class LiveGateway:
    url: str
    gateway: Gateway


@contextlib.asynccontextmanager
async def live_gateway(tmp_path: Path, **overrides: Any) -> AsyncIterator[LiveGateway]:
    """The gateway served by uvicorn in this loop; its public URL is the port it listens on.

    The socket is bound before the app is made, so the signed result URLs carry the real port
    (tests/emulators/server.py's ``serve`` picks the port after the app exists).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(make_settings(tmp_path, public_url=url, **overrides))
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
        yield LiveGateway(url, app.state.gateway)
    finally:
        server.should_exit = True
        await task
        sock.close()


def chromium_missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@dataclass
class Browser:
    """A launched Chromium, and the console errors and CSP reports of the pages it opened."""

    browser: Any
    errors: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    async def page(self, width: int = 1280, height: int = 900) -> Any:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()
        self.contexts.clear()

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)
