"""Open waits per key (gateway/waiting.py) as the faces use them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.api.support import running, submit_image
from tests.conftest import AUTH_A, make_settings


async def test_a_synchronous_image_over_the_cap_of_waits_is_refused_before_its_job_exists(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, max_waiters_per_key=1, sandbox_latency=30)
    async with running(settings) as (client, _gw):
        first = await submit_image(client)
        long_poll = asyncio.create_task(
            client.get(f"/v1/jobs/{first['id']}?wait=30", headers=AUTH_A)
        )
        await asyncio.sleep(0.2)  # the long-poll holds the key's one slot

        resp = await client.post(
            "/v1/images/generations",
            json={"model": "sandbox-image", "prompt": "a fox", "size": "256x256"},
            headers=AUTH_A,
        )
        listed = (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]
        long_poll.cancel()

    assert resp.status_code == 429, resp.text
    assert resp.json()["error"]["code"] == "too_many_waiters"
    assert [j["id"] for j in listed] == [first["id"]]  # nothing was created, nothing runs
