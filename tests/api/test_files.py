"""Result files (gateway/api/files.py): signed, expiring URLs that need no Authorization."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.app import Gateway
from tests.api.support import assert_error, download, local_path, open_image, submit_image
from tests.conftest import AUTH_A, wait_for


async def finished_job(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    job = await wait_for(client, (await submit_image(client, **fields))["id"])
    assert job["status"] == "COMPLETED", job
    return job


def split(url: str) -> tuple[str, str, int, str]:
    """``(job_id, name, expires, sig)`` of a result URL."""
    parts = urlsplit(url)
    _, files, job_id, name = parts.path.split("/")
    assert files == "files"
    query = parse_qs(parts.query)
    return job_id, name, int(query["expires"][0]), query["sig"][0]


async def test_result_url_downloads_the_png_without_authorization(
    client: httpx.AsyncClient,
) -> None:
    job = await finished_job(client, width=96, height=64)
    url = job["result"]["url"]
    assert url.startswith("http://testserver/files/")
    resp = await download(client, url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    image = open_image(resp.content)
    assert (image.format, image.size) == ("PNG", (96, 64))


async def test_result_url_stays_the_same_between_polls(client: httpx.AsyncClient) -> None:
    job = await finished_job(client)
    again = await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)
    assert again.json()["result"]["url"] == job["result"]["url"]


async def test_tampered_signature_is_forbidden(client: httpx.AsyncClient) -> None:
    url = (await finished_job(client))["result"]["url"]
    job_id, name, expires, sig = split(url)
    forged = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    resp = await client.get(f"/files/{job_id}/{name}?expires={expires}&sig={forged}")
    assert_error(resp, 403, error_type="permission_error")


async def test_signature_with_non_ascii_characters_is_forbidden_not_a_crash(
    client: httpx.AsyncClient,
) -> None:
    # found by tests/api/test_schemathesis.py: compare_digest raised TypeError (a 500)
    resp = await client.get(f"/files/job-{'0' * 24}/out.png?expires=9999999999&sig=%C2%80")
    assert_error(resp, 403, error_type="permission_error")


@pytest.mark.parametrize("expires", ["%C2%B2", "%D9%A3", "9" * 5000])
async def test_an_expiry_that_is_not_plain_digits_is_forbidden_not_a_crash(
    client: httpx.AsyncClient, expires: str
) -> None:
    # "²" passed str.isdigit() and int() refused it, as it refuses 5,000 digits: a 500
    # that needed no key, and a traceback logged for each request
    resp = await client.get(f"/files/job-{'0' * 24}/0.png?expires={expires}&sig=x")
    assert_error(resp, 403, error_type="permission_error")


async def test_an_input_naming_a_result_url_with_a_bad_expiry_fails_as_an_input_error(
    client: httpx.AsyncClient,
) -> None:
    url = f"http://testserver/files/job-{'0' * 24}/0.png?expires=\u00b2&sig=x"
    body = {"model": "sandbox-upscale", "input": {"image_url": url}}
    resp = await client.post("/v1/jobs", json=body, headers=AUTH_A)
    assert resp.status_code == 202, resp.text

    job = await wait_for(client, resp.json()["id"])

    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == "invalid_input", job["error"]


async def test_missing_signature_is_forbidden(client: httpx.AsyncClient) -> None:
    url = (await finished_job(client))["result"]["url"]
    job_id, name, expires, _sig = split(url)
    for query in ("", f"?expires={expires}", f"?expires={expires}&sig="):
        resp = await client.get(f"/files/{job_id}/{name}{query}")
        assert_error(resp, 403, error_type="permission_error")


async def test_expiry_cannot_be_extended(client: httpx.AsyncClient) -> None:
    url = (await finished_job(client))["result"]["url"]
    job_id, name, expires, sig = split(url)
    resp = await client.get(f"/files/{job_id}/{name}?expires={expires + 86400}&sig={sig}")
    assert_error(resp, 403)


async def test_signature_of_one_file_does_not_open_another(client: httpx.AsyncClient) -> None:
    job = await finished_job(client, num_images=2)
    first, second = (split(image["url"]) for image in job["result"]["images"])
    job_id, _name, expires, sig = first
    resp = await client.get(f"/files/{job_id}/{second[1]}?expires={expires}&sig={sig}")
    assert_error(resp, 403)
    other = await finished_job(client)
    other_id = split(other["result"]["url"])[0]
    resp = await client.get(f"/files/{other_id}/{first[1]}?expires={expires}&sig={sig}")
    assert_error(resp, 403)


async def test_expired_url_is_gone(client: httpx.AsyncClient, gateway: Gateway) -> None:
    url = (await finished_job(client))["result"]["url"]
    job_id, name, _expires, _sig = split(url)
    expired = gateway.signer.url(job_id, name, int(time.time()) - 10)
    assert_error(await download(client, expired), 410)


async def test_signed_url_of_a_file_that_does_not_exist_is_not_found(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    url = (await finished_job(client))["result"]["url"]
    job_id, _name, expires, _sig = split(url)
    assert_error(await download(client, gateway.signer.url(job_id, "7.png", expires)), 404)


@pytest.mark.parametrize(
    ("job_id", "name", "raw"),
    [
        pytest.param("..", "backserv.db", "%2E%2E/backserv.db", id="dot-dot-job"),
        pytest.param("..", "..", "%2E%2E/%2E%2E", id="dot-dot-both"),
        pytest.param(
            "job-aa",
            "..%2F..%2Fbackserv.db",
            "job-aa/..%2F..%2Fbackserv.db",
            id="encoded-slash-name",
        ),
        pytest.param(".", "backserv.db", "%2E/backserv.db", id="dot-job"),
    ],
)
async def test_path_traversal_never_serves_a_file_outside_storage(
    client: httpx.AsyncClient, gateway: Gateway, job_id: str, name: str, raw: str
) -> None:
    await finished_job(client)  # storage and database both hold something
    database = (await asyncio.to_thread(Path(gateway.settings.sqlite_path).read_bytes))[:16]
    expires = int(time.time()) + 3600
    signed = urlsplit(gateway.signer.url(job_id, name, expires)).query  # a valid signature
    resp = await client.get(f"/files/{raw}?{signed}")
    assert resp.status_code in (403, 404), (resp.status_code, resp.content[:64])
    assert database not in resp.content
    assert_error(resp, resp.status_code)


async def test_files_route_needs_no_api_key_but_job_route_does(client: httpx.AsyncClient) -> None:
    job = await finished_job(client)
    assert (await client.get(local_path(job["result"]["url"]))).status_code == 200
    assert_error(await client.get(f"/v1/jobs/{job['id']}"), 401)


async def test_purged_file_behind_a_still_valid_url_is_gone(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    job = await finished_job(client, num_images=2)
    url = job["result"]["url"]
    assert split(url)[2] > time.time(), "the URL itself has not expired"
    file_ttl = gateway.settings.file_ttl_seconds

    counts = await gateway.janitor.run_once(time.time() + file_ttl + 1)

    assert counts.files == 1
    error = assert_error(await download(client, url), 410, code="file_expired")
    assert "expired" in error["message"]
    after = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    assert after["status"] == "COMPLETED"
    assert after["result"]["expired"] is True
    assert after["result"]["url"] == url
    for image in after["result"]["images"]:
        assert_error(await download(client, image["url"]), 410)


async def test_result_of_a_job_whose_files_remain_is_not_marked_expired(
    client: httpx.AsyncClient,
) -> None:
    job = await finished_job(client)
    assert "expired" not in job["result"]


async def test_file_of_a_deleted_job_record_is_gone(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    job = await finished_job(client)
    url = job["result"]["url"]

    counts = await gateway.janitor.run_once(time.time() + gateway.settings.record_ttl_seconds + 1)

    assert counts.records == 1
    assert_error(await download(client, url), 410)
    assert_error(await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A), 404)
