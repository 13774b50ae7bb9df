"""Fixtures of the web tests: a headless Chromium (tests/web/browser.py), and screenshots."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, Browser, chromium_missing

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        chromium_missing("Playwright's Python package is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        chromium_missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield Browser(chromium)
        finally:
            await chromium.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Awaitable[None]]:
    """Saves a page as docs/<name>.png when BACKSERV_SCREENSHOTS=1 (the README's pictures)."""

    async def take(page: Any, name: str) -> None:
        if SCREENSHOTS:
            await page.screenshot(path=str(DOCS / f"{name}.png"))

    return take
