"""Every page's forms work from the keyboard and have labels: axe-core in Chromium finds no
serious or critical WCAG 2.1 A/AA violation, and a job runs without a mouse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AUTH_A
from tests.web.a11y import serious_violations, with_axe
from tests.web.browser import BROWSER_LOOP, Browser, live_gateway
from tests.web.test_browser import expect_text, use_key

pytestmark = [pytest.mark.timeout(90), BROWSER_LOOP]

PAGES = [
    "/",
    "/models/sandbox-edit",
    "/playground?model=sandbox-edit",
    "/compare",
    "/jobs",
]


@pytest.mark.parametrize("width", [1280, 375])
async def test_pages_have_no_serious_accessibility_violations(
    tmp_path: Path, browser: Browser, width: int
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=0) as live:
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            job = await client.post(
                "/v1/jobs/images", json={"model": "sandbox-image", "prompt": "x", "width": 64}
            )
            await client.get(f"/v1/jobs/{job.json()['id']}?wait=10")
        page = await browser.page(width=width, height=800)
        await with_axe(page)
        problems: dict[str, list[str]] = {}
        for path in [*PAGES, f"/jobs/{job.json()['id']}"]:
            await page.goto(live.url + path)
            if await page.locator("#api-key").count():
                await use_key(page)
            if path.startswith("/jobs/job-"):
                await expect_text(page, "#job-status", "COMPLETED")
            if path == "/jobs":
                await page.locator("#jobs-body tr").first.wait_for()
            found = await serious_violations(page)
            if found:
                problems[path] = found
        assert problems == {}
        assert browser.errors == []


async def test_a_job_runs_from_the_keyboard_alone(tmp_path: Path, browser: Browser) -> None:
    async with live_gateway(tmp_path, sandbox_latency=0.2) as live:
        page = await browser.page(height=800)
        await page.goto(live.url + "/playground?model=sandbox-image-fast")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip-link"
        await page.focus("#api-key")
        await page.keyboard.type(AUTH_A["Authorization"].split()[1])
        await page.keyboard.press("Enter")
        await page.locator("#key-state").filter(has_text="Using key").wait_for()
        await page.focus("#model-select")
        await page.keyboard.press("ArrowUp")  # the model before it in the catalog
        await page.wait_for_function(
            "() => document.getElementById('job-form').dataset.model === 'sandbox-image'"
        )
        await page.keyboard.press("Tab")  # the model page's link
        await page.keyboard.press("Tab")
        focused: Any = await page.evaluate("document.activeElement.id")
        assert focused == "param-prompt"  # the prompt is the form's first field
        await page.keyboard.type("typed, not clicked")
        for _ in range(12):  # Tab on to the Run button
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.id") == "submit":
                break
        assert await page.evaluate("document.activeElement.id") == "submit"
        await page.keyboard.press("Enter")
        await expect_text(page, "#job-status", "COMPLETED")
        box = await page.locator("#param-prompt").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 800  # above the fold
        assert browser.errors == []
