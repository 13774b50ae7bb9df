"""Fixtures of the web tests: one headless Chromium per test module (tests/web/browser.py),
a fresh set of pages per test, and screenshots.

A module's browser tests share its event loop (``pytestmark = BROWSER_LOOP``) so they can
share the browser: launching Chromium is most of a short test's time on a 2-core CI runner.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, Browser, chromium_missing

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        chromium_missing("Playwright's Python package is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        chromium_missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium: Any) -> AsyncIterator[Browser]:
    """The module's Chromium, with this test's own pages (closed after it) and errors."""
    opened = Browser(chromium)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Awaitable[None]]:
    """Saves a page as docs/screenshots/<name>.png when BACKSERV_SCREENSHOTS=1 (the README's
    pictures; ``make screenshots``)."""

    async def take(page: Any, name: str) -> None:
        if SCREENSHOTS:
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"))

    return take
