"""The console's newer pages in Chromium: a job's page, upload to an edit job, side by side,
the API reference. With ``BACKSERV_SCREENSHOTS=1`` (``make screenshots``) they save
docs/screenshots/*.png at 1280x800 and at a phone's width."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import AUTH_A
from tests.web.browser import BROWSER_LOOP, Browser, live_gateway
from tests.web.test_browser import expect_text, use_key

pytestmark = [pytest.mark.timeout(60), BROWSER_LOOP]


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


async def test_job_page_follows_a_job_to_completed_live(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=3, webhook_allow="127.0.0.1") as live:
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            job = (
                await client.post(
                    "/v1/jobs",
                    json={
                        "model": "sandbox-image",
                        "input": {"prompt": "a harbour", "width": 128, "height": 96, "seed": 5},
                        "webhook_url": f"{live.url}/hook",  # a 404: deliveries to show
                    },
                )
            ).json()
        page = await browser.page(height=800)
        await page.goto(f"{live.url}/jobs/{job['id']}")
        await use_key(page)
        seen = page.locator("#job-status")
        await expect_text(page, "#job-status", "PROCESSING")  # live, before the end
        assert await page.inner_text("#job-transport") == "live (Server-Sent Events)"
        await expect_text(page, "#job-status", "COMPLETED")
        await page.wait_for_function(
            "() => { const i = document.querySelector('#job-outputs img');"
            " return i && i.complete && i.naturalWidth === 128; }"
        )
        assert await page.locator("#job-outputs a[download]").count() == 1
        assert await page.inner_text("#fact-seed") == "5"
        assert await page.inner_text("#fact-provider") == "sandbox"
        assert "a harbour" in await page.inner_text("#job-input")
        attempts = page.locator("#job-attempts tr")
        assert await attempts.count() == 1
        assert "sandbox" in await attempts.inner_text()
        assert "succeeded" in (await attempts.inner_text()).lower()
        assert f"{live.url}/hook" in await page.inner_text("#webhook-box")
        assert await page.locator("#job-deliveries tr").count() >= 1
        assert await seen.get_attribute("data-status") == "COMPLETED"
        for lang, needle in (
            ("curl", f"{live.url}/v1/jobs"),
            ("python", "requests.post("),
            ("openai", "from openai import OpenAI"),
            ("javascript", "await fetch("),
        ):
            await page.click(f'#job-code button[data-lang="{lang}"]')
            code = await page.inner_text("#job-code code")
            assert needle in code and "a harbour" in code, lang
        await page.evaluate("window.scrollTo(0, 0)")
        await screenshot(page, "job")

        await page.click("#run-again")  # an ordinary job with the same input
        await page.wait_for_url(lambda url: "/jobs/job-" in url and job["id"] not in url)
        await expect_text(page, "#job-status", "COMPLETED")
        assert "a harbour" in await page.inner_text("#job-input")
        assert browser.errors == []


async def test_jobs_table_links_to_job_pages_shows_thumbnails_and_clips_nothing(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=0) as live:
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            ok = await client.post(
                "/v1/jobs/images", json={"model": "sandbox-image", "prompt": "x", "width": 64}
            )
            bad = await client.post(
                "/v1/jobs",
                json={
                    "model": "sandbox-upscale",
                    "input": {"image_url": "data:image/png;base64,iVBORw0KGgpnYXJiYWdl"},
                },
            )
            for r in (ok, bad):
                await client.get(f"/v1/jobs/{r.json()['id']}?wait=10")
        page = await browser.page(height=800)
        await page.goto(live.url + "/jobs")
        await use_key(page)
        await page.locator("#jobs-body tr").nth(1).wait_for()
        done = page.locator(f'#jobs-body tr[data-job-id="{ok.json()["id"]}"]')
        await page.wait_for_function(
            "() => { const i = document.querySelector('#jobs-body .thumb-sm');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        scroll = page.locator(".table-scroll").first
        assert await scroll.evaluate("el => el.scrollWidth <= el.clientWidth")  # nothing clipped
        await screenshot(page, "jobs")
        await done.locator("a.job-link").click()
        await page.wait_for_url(f"{live.url}/jobs/{ok.json()['id']}")
        await expect_text(page, "#job-status", "COMPLETED")
        assert browser.errors == []


async def test_upload_and_drop_make_an_edit_job_with_inline_images(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=0.2) as live:
        page = await browser.page(height=800)
        await page.goto(live.url + "/playground?model=sandbox-image")
        await use_key(page)
        await page.evaluate("window.marker = 1")
        await page.select_option("#model-select", "sandbox-edit")  # no reload
        await page.locator("#param-image_url-file").wait_for()
        assert await page.evaluate("window.marker") == 1
        assert page.url.endswith("?model=sandbox-edit")
        await page.set_input_files(
            "#param-image_url-file",
            files=[{"name": "in.png", "mimeType": "image/png", "buffer": png(80, 60, (200, 0, 0))}],
        )
        preview = page.locator("#param-image_url-previews img")
        await preview.wait_for()
        assert await page.locator("#param-image_url").is_disabled()
        # a reference image dropped onto the zone, as a browser hands a dragged file over
        await page.evaluate(
            """async (b64) => {
              const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
              const dt = new DataTransfer();
              dt.items.add(new File([bytes], 'ref.png', { type: 'image/png' }));
              const zone = document.querySelector('[data-drop-for="param-reference_image_urls"]');
              const init = { dataTransfer: dt, bubbles: true, cancelable: true };
              zone.dispatchEvent(new DragEvent('drop', init));
            }""",
            base64.b64encode(png(40, 40, (0, 0, 200))).decode(),
        )
        await page.locator("#param-reference_image_urls-previews img").wait_for()
        await page.fill("#param-prompt", "make it blue")
        await screenshot(page, "playground-upload")
        await page.click("#submit")
        await expect_text(page, "#job-status", "COMPLETED")
        await page.wait_for_function(
            "() => { const i = document.querySelector('#job-result img');"
            " return i && i.complete && i.naturalWidth === 80; }"
        )  # the edit of the uploaded 80x60 image
        assert await page.locator("#cancel").is_hidden()
        assert await page.inner_text("#job-fallback") == "no"
        assert await page.inner_text("#job-seed") != "—"
        job_id = await page.inner_text("#job-id")
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            job = (await client.get(f"/v1/jobs/{job_id}")).json()
        assert job["model"] == "sandbox-edit"
        assert job["input"]["image_url"].startswith("data:image/png;base64,")
        assert len(job["input"]["reference_image_urls"]) == 1

        await page.click("#show-code")  # the code for these very inputs
        assert "make it blue" in await page.inner_text("#form-code code")
        assert browser.errors == []


async def test_side_by_side_runs_two_models_as_ordinary_jobs(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path, sandbox_latency=0.3) as live:
        page = await browser.page(height=800)
        await page.goto(live.url + "/compare")
        await use_key(page)
        await page.eval_on_selector_all(
            ".model-choices input", "boxes => boxes.forEach(b => { b.checked = false; })"
        )
        await page.check("#compare-sandbox-image")
        await page.check("#compare-sandbox-image-fast")
        await page.fill("#compare-prompt", "a lighthouse at dusk")
        await page.fill("#compare-seed", "42")
        await page.click("#compare-run")
        columns = page.locator(".compare-col")
        await columns.nth(1).wait_for()
        assert await columns.count() == 2
        for model in ("sandbox-image", "sandbox-image-fast"):
            col = page.locator(f'.compare-col[data-model="{model}"]')
            await col.locator('.status[data-status="COMPLETED"]').wait_for()
            await col.locator(".result img").wait_for()
            assert await col.locator(".latency").inner_text() != "—"
            assert await col.locator(".price").inner_text() == "unpriced"
        await screenshot(page, "compare")
        async with httpx.AsyncClient(base_url=live.url, headers=AUTH_A) as client:
            jobs = (await client.get("/v1/jobs")).json()["jobs"]
        assert sorted(j["model"] for j in jobs) == ["sandbox-image", "sandbox-image-fast"]
        assert {j["input"]["seed"] for j in jobs} == {42}
        assert browser.errors == []


async def test_docs_render_the_operations_offline(
    tmp_path: Path, browser: Browser, screenshot: Any
) -> None:
    async with live_gateway(tmp_path) as live:
        page = await browser.page(height=800)
        outside: list[str] = []
        page.on(
            "request",
            lambda r: None if r.url.startswith(live.url) else outside.append(r.url),
        )
        await page.goto(live.url + "/docs")
        ops = page.locator(".opblock")
        await ops.first.wait_for()
        assert await ops.count() > 20
        text = await page.inner_text("#swagger")
        assert "/v1/jobs/{job_id}" in text
        await page.locator(".opblock-summary").first.click()
        await page.locator(".opblock-body").first.wait_for()
        await screenshot(page, "docs")
        assert [u for u in outside if not u.startswith("data:")] == []
        assert browser.errors == []
