"""The pages in a real headless Chromium: catalog, model page, playground, cancel, jobs page.

Each test serves the gateway on a loopback port (conftest.py) and drives Debian's Chromium
through Playwright. With ``BACKSERV_SCREENSHOTS=1`` the catalog and playground tests save
``docs/catalog.png`` and ``docs/playground.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AUTH_A, AUTH_B, KEY_A
from tests.web.browser import BROWSER_LOOP, Browser, live_gateway

pytestmark = [pytest.mark.timeout(60), BROWSER_LOOP]

SANDBOX_MODELS = [
    "sandbox-image",
    "sandbox-image-fast",
    "sandbox-video",
    "sandbox-upscale",
    "sandbox-face-swap",
]
#: records every text the job panel shows, so a test sees the updates, not only the end
WATCH_JOB_PANEL = """() => {
  window.seen = [];
  const panel = document.getElementById('job');
  const read = () => window.seen.push({
    status: document.getElementById('job-status').textContent,
    progress: document.getElementById('job-progress').value,
    queue: document.getElementById('job-queue').textContent,
  });
  const all = { subtree: true, childList: true, characterData: true };
  new MutationObserver(read).observe(panel, all);
}"""


async def expect_text(page: Any, selector: str, text: str, timeout: float = 10_000) -> None:
    from playwright.async_api import expect

    await expect(page.locator(selector)).to_have_text(text, timeout=timeout)


async def visible_models(page: Any) -> list[str]:
    ids: list[str] = await page.locator(".models > li:visible").evaluate_all(
        "items => items.map(li => li.dataset.id)"
    )
    return ids


async def use_key(page: Any, key: str = KEY_A) -> None:
    await page.fill("#api-key", key)
    await page.press("#api-key", "Enter")  # the key form works from the keyboard
    await page.locator("#key-state").filter(has_text="Using key").wait_for()


async def test_catalog_grid_puts_real_models_first_and_filters_without_reload(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=0) as live:
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            job = await client.post(
                "/v1/jobs/images",
                json={"model": "sandbox-image", "prompt": "x", "width": 64, "height": 64},
            )
            await client.get(f"/v1/jobs/{job.json()['id']}?wait=10")
        page = await browser.page(height=800)
        await page.goto(live.url + "/")
        shown = await visible_models(page)
        assert set(SANDBOX_MODELS) <= set(shown)
        real = await page.locator("#group-models .models > li").evaluate_all(
            "l => l.map(li => li.dataset.id)"
        )
        assert real[0] == shown[0] == "flux-dev"  # hosted models first, the sandbox apart
        assert not set(SANDBOX_MODELS) & set(real)
        card = page.locator('.models > li[data-id="sandbox-image"]')
        assert "available" in await card.locator(".badges").inner_text()
        assert "p50 of 1" in await card.locator(".latency").inner_text()  # this gateway's jobs
        await page.wait_for_function(
            "() => { const i = document.querySelector('li[data-id=\"sandbox-image\"] .thumb img');"
            " return i && i.complete && i.naturalWidth === 384; }"
        )  # the example the sandbox rendered from the catalog's prompt
        flux = page.locator('.models > li[data-id="flux-dev"]')
        assert "FAL_KEY" in await flux.locator(".reason").inner_text()  # why it cannot run
        assert "$" in await flux.locator(".price").inner_text()  # the catalog's price
        assert await card.locator(".price").inner_text() == "unpriced"  # never shown as 0
        assert await page.evaluate("document.documentElement.scrollHeight") < 3500
        await screenshot(page, "catalog")

        await page.evaluate("window.marker = 1")  # gone if the page reloads
        await page.select_option("#filter-kind", "video")
        assert sorted(await visible_models(page)) == ["ltx-video", "sandbox-video"]
        assert "kind=video" in page.url
        await page.select_option("#filter-provider", "fal")
        assert await visible_models(page) == ["ltx-video"]
        assert not await page.locator("#group-sandbox").is_visible()
        await page.select_option("#filter-kind", "")
        await page.select_option("#filter-provider", "")
        await page.check("#filter-available")
        assert set(await visible_models(page)) == set(
            await page.locator("li[data-available=yes]").evaluate_all(
                "l => l.map(li => li.dataset.id)"
            )
        )
        assert "flux-dev" not in await visible_models(page)
        await page.uncheck("#filter-available")
        await page.fill("#filter-q", "lanczos")
        assert sorted(await visible_models(page)) == ["sandbox-refine", "sandbox-upscale"]
        await page.fill("#filter-q", "no such model anywhere")
        assert await visible_models(page) == []
        assert await page.locator("#catalog-empty").is_visible()
        assert await page.evaluate("window.marker") == 1

        phone = await browser.page(width=375, height=800)
        await phone.goto(live.url + "/")
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
        await screenshot(phone, "catalog-phone")
        assert browser.errors == []


async def test_model_page_shows_three_examples_with_this_gateway_and_model(
    tmp_path: Path, browser: Browser
) -> None:
    async with live_gateway(tmp_path) as live:
        page = await browser.page()
        await page.goto(live.url + "/")
        await page.click('.models a[href="/models/sandbox-video"]')
        await page.wait_for_url(live.url + "/models/sandbox-video")
        for slug in ("curl", "requests", "openai"):
            code = await page.locator(f"#code-{slug}").inner_text()
            assert f"{live.url}/v1" in code, slug
            assert '"sandbox-video"' in code, slug
        await page.click('button[data-copy="code-curl"]')  # copied, or selected for Ctrl+C
        await page.wait_for_function("document.getElementById('copy-status').textContent")
        await page.click('a[href="/playground?model=sandbox-video"]')
        assert await page.locator("#job-form").get_attribute("data-model") == "sandbox-video"
        assert browser.errors == []


async def test_playground_submission_shows_live_progress_and_the_finished_image(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=1.5) as live:
        page = await browser.page(height=800)
        await page.goto(live.url + "/playground?model=sandbox-image")
        await use_key(page)
        assert KEY_A not in page.url
        await page.evaluate(WATCH_JOB_PANEL)
        await page.fill("#param-prompt", "a lighthouse at dusk")
        await page.fill("#param-width", "256")
        await page.fill("#param-height", "160")
        await page.click("#submit")

        await expect_text(page, "#job-status", "COMPLETED")
        image = page.locator("#job-result img")
        await page.wait_for_function(
            "() => { const i = document.querySelector('#job-result img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        assert await image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [256, 160]
        seen = await page.evaluate("window.seen")
        assert {"QUEUED", "PROCESSING"} & {s["status"] for s in seen}
        assert any(0 < s["progress"] < 100 for s in seen), seen  # progress arrived live
        assert await page.inner_text("#job-transport") == "live (Server-Sent Events)"
        assert await page.locator("#cancel").is_disabled()
        await page.evaluate("window.scrollTo(0, 0)")
        await screenshot(page, "playground")
        assert browser.errors == []


async def test_playground_falls_back_to_long_polling_when_the_stream_fails(
    tmp_path: Path, browser: Browser
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=0.3) as live:
        page = await browser.page()
        await page.route("**/events", lambda route: route.abort())  # e.g. a buffering proxy
        await page.goto(live.url + "/playground?model=sandbox-image")
        await use_key(page)
        await page.fill("#param-prompt", "polled")
        await page.fill("#param-width", "64")
        await page.fill("#param-height", "64")
        await page.click("#submit")
        await expect_text(page, "#job-status", "COMPLETED")
        assert await page.inner_text("#job-transport") == "polling"
        await page.locator("#job-result img").wait_for()
        assert [e for e in browser.errors if "ERR_FAILED" not in e] == []


async def test_cancel_of_a_running_job_shows_cancelled(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=30) as live:
        page = await browser.page(width=375, height=800)  # on a phone-sized screen
        await page.goto(live.url + "/playground?model=sandbox-image")
        await use_key(page)
        await page.fill("#param-prompt", "never finished")
        await page.click("#submit")
        await expect_text(page, "#job-status", "PROCESSING")
        await page.focus("#cancel")
        await page.keyboard.press("Enter")
        await expect_text(page, "#job-status", "CANCELLED")
        assert await page.locator("#cancel").is_disabled()
        assert await page.locator("#cancel").is_hidden()  # nothing left to cancel
        assert await page.locator("#job-result img").count() == 0
        await page.evaluate("window.scrollTo(0, 0)")
        await screenshot(page, "playground-phone")
        job_id = await page.inner_text("#job-id")
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "CANCELLED"
        assert browser.errors == []


async def test_jobs_page_lists_the_keys_jobs_with_their_outcome(
    tmp_path: Path, browser: Browser
) -> None:
    async with live_gateway(tmp_path) as live:
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            image = await client.post(
                "/v1/jobs/images", json={"model": "sandbox-image-fast", "prompt": "x", "width": 64}
            )
            broken = await client.post(
                "/v1/jobs",
                json={
                    "model": "sandbox-upscale",
                    # a PNG's signature, then garbage: accepted, and fails when it runs
                    "input": {"image_url": "data:image/png;base64,iVBORw0KGgpnYXJiYWdl"},
                },
            )
            other = await client.post(
                "/v1/jobs/images", json={"model": "sandbox-image", "prompt": "y"}, headers=AUTH_B
            )
            ids = [r.json()["id"] for r in (image, broken)]
            for job_id in ids:
                await client.get(f"/v1/jobs/{job_id}?wait=10")

        page = await browser.page()
        await page.goto(live.url + "/jobs")
        await use_key(page)
        rows = page.locator("#jobs-body tr")
        await rows.nth(1).wait_for()
        assert await rows.count() == 2  # key B's job is not listed
        assert other.json()["id"] not in await page.inner_text("#jobs-body")
        done = page.locator(f'#jobs-body tr[data-job-id="{ids[0]}"]')
        assert await done.locator(".status").inner_text() == "COMPLETED"
        assert await done.locator(".model").inner_text() == "sandbox-image-fast"
        assert await done.locator(".provider").inner_text() == "sandbox"
        failed = page.locator(f'#jobs-body tr[data-job-id="{ids[1]}"]')
        assert await failed.locator(".status").inner_text() == "FAILED"
        assert await failed.locator(".error-text").inner_text() != ""

        await page.reload()  # the key outlives a reload of the tab, in sessionStorage only
        await rows.nth(1).wait_for()
        assert await page.evaluate("localStorage.length") == 0
        assert KEY_A not in page.url
        await page.select_option("#jobs-status", "FAILED")
        await page.locator("#jobs-body tr").filter(has_text="COMPLETED").wait_for(state="detached")
        assert await rows.count() == 1
        assert browser.errors == []


PRICED_CATALOG = """
[[models]]
id = "priced-image"
kind = "image"
[[models.routes]]
provider = "sandbox"
target = "image"
price = { amount = 0.04, unit = "image" }

[[models]]
id = "unpriced-video"
kind = "video"
[[models.routes]]
provider = "sandbox"
target = "video"
"""


async def test_job_page_shows_what_the_job_and_each_attempt_cost(
    tmp_path: Path, browser: Browser
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(PRICED_CATALOG, encoding="utf-8")
    async with live_gateway(tmp_path, sandbox_latency=0, catalog_path=catalog) as live:
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            priced = await client.post(
                "/v1/jobs",
                json={"model": "priced-image", "input": {"prompt": "x", "num_images": 2}},
            )
            unpriced = await client.post(
                "/v1/jobs", json={"model": "unpriced-video", "input": {"prompt": "y"}}
            )
            ids = [r.json()["id"] for r in (priced, unpriced)]
            for job_id in ids:
                assert (await client.get(f"/v1/jobs/{job_id}?wait=10")).json()["usage"]

        page = await browser.page()
        await page.goto(f"{live.url}/jobs/{ids[0]}")
        await use_key(page)
        await expect_text(page, "#job-status", "COMPLETED")
        assert await page.inner_text("#fact-cost") == "0.08 USD"  # two images at $0.04
        assert await page.inner_text("#fact-estimate") == "0.08 USD"
        attempt = page.locator("#job-attempts tr").first
        assert await attempt.locator("td").nth(5).inner_text() == "0.08 USD"

        await page.goto(f"{live.url}/jobs/{ids[1]}")
        await expect_text(page, "#job-status", "COMPLETED")
        assert await page.inner_text("#fact-cost") == "unpriced"  # not 0: unknown
        assert await page.inner_text("#fact-estimate") == "unpriced"
        attempt = page.locator("#job-attempts tr").first
        assert await attempt.locator("td").nth(5).inner_text() == "unpriced"
        assert browser.errors == []
