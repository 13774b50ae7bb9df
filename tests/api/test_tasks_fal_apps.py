"""``fal_app_id`` for apps the catalog does not list (gateway/api/tasks/fal_apps.py), and PUT
of ``fal_app_id`` / ``fal_parameters`` on a task that still waits, against the fal emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.tasks_support import (
    ALICE,
    Tasks,
    assert_detail,
    assert_validation_error,
    auth,
    tasks_server,
)
from tests.emulators.control import EmulatorState
from tests.emulators.fal import create_fal_app
from tests.emulators.server import serve

ORIGIN = {"origin_instance": "test-suite"}
FAL_FLUX = {
    "provider": "fal",
    "target": "fal-ai/flux/dev",
    "options": {"size": "image_size"},
    "input_map": {"steps": "num_inference_steps"},
}
CATALOG = {
    "models": [
        {
            "id": "sandbox-image",
            "kind": "image",
            "routes": [{"provider": "sandbox", "target": "image"}],
        },
        {"id": "flux-fal", "kind": "image", "routes": [FAL_FLUX]},
        {
            "id": "sandbox-fal-app",
            "kind": "fal_app",
            "routes": [{"provider": "sandbox", "target": "fal_app"}],
        },
        {
            "id": "listed-app",
            "kind": "fal_app",
            "routes": [{"provider": "fal", "target": "fal-ai/listed"}],
        },
    ]
}


def experimental(app: str, params: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    task = {"task_type": "EXPERIMENTAL_FAL", "fal_app_id": app, **ORIGIN, **fields}
    if params is not None:
        task["fal_parameters"] = params
    return task


@dataclass
class Hosted:
    tasks: Tasks
    fal: EmulatorState


@contextlib.asynccontextmanager
async def hosted_server(tmp_path: Path, **settings: Any) -> AsyncIterator[Hosted]:
    fal_app = create_fal_app()
    async with serve(fal_app) as fal_url:
        values: dict[str, Any] = {
            "fal_key": "fal-test-key",
            "fal_queue_url": fal_url,
            "provider_poll_seconds": 0.05,
            "provider_timeout_seconds": 5.0,
            "max_route_attempts": 2,
            "fetch_allow": "127.0.0.1",  # the emulator serves its outputs on loopback
        }
        catalog = parse_catalog(CATALOG, KNOWN_PROVIDERS, source="fal-apps-catalog")
        async with tasks_server(tmp_path, catalog=catalog, **(values | settings)) as server:
            fal: EmulatorState = fal_app.state.emulator
            fal.configure(latency=0.05)
            yield Hosted(server, fal)


@pytest.fixture
async def hosted(tmp_path: Path) -> AsyncIterator[Hosted]:
    async with hosted_server(tmp_path) as server:
        yield server


async def test_an_app_the_catalog_lacks_gets_its_parameters_as_they_are(hosted: Hosted) -> None:
    params = {"prompt": "an owl", "loras": [{"path": "x", "scale": 0.5}], "seed": 7}

    created = await hosted.tasks.create(experimental("fal-ai/not-listed", params))
    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "COMPLETED", task
    [submit] = hosted.fal.requests("submit")
    assert submit.path.endswith("/fal-ai/not-listed") and submit.body == params
    assert task["fal_app_id"] == "fal-ai/not-listed" and task["fal_parameters"] == params
    assert task["provider_type"] == "FAL" and task["fal_request_id"] == submit.request_id


async def test_a_generation_on_an_unlisted_app_is_mapped_like_the_kinds_fal_route(
    hosted: Hosted,
) -> None:
    created = await hosted.tasks.create(
        {
            "task_type": "GENERATION",
            "prompt": "a fox",
            "width": 96,
            "height": 64,
            "fal_app_id": "fal-ai/flux/schnell",
            **ORIGIN,
        }
    )
    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "COMPLETED", task
    [submit] = hosted.fal.requests("submit")
    assert submit.path.endswith("/fal-ai/flux/schnell")
    assert submit.body["prompt"] == "a fox"
    assert submit.body["image_size"] == {"width": 96, "height": 64}  # flux-fal's mapping


async def test_an_unlisted_app_falls_back_to_the_asked_fallback(hosted: Hosted) -> None:
    hosted.fal.script("submit", 503, 503)  # max_route_attempts = 2: the retries are spent
    created = await hosted.tasks.create(
        experimental(
            "fal-ai/flaky",
            {"prompt": "a cat", "image_size": {"width": 32, "height": 32}},
            fallback_provider_type="SANDBOX",
        )
    )
    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "COMPLETED", task
    assert task["fallback_used"] is True and task["fallback_provider_type"] == "SANDBOX"
    assert hosted.fal.submit_count(accepted_only=False) == 2


async def test_the_setting_bounds_which_unlisted_apps_run(tmp_path: Path) -> None:
    async with hosted_server(tmp_path, tasks_fal_apps="fal-ai/ok/*, team/*") as hosted:
        refused = await hosted.tasks.client.post(
            "/api/v1/tasks/", json=experimental("fal-ai/other", {}), headers=ALICE
        )
        [problem] = assert_validation_error(refused, ["body", "fal_app_id"])
        assert "BACKSERV_TASKS_FAL_APPS" in problem["msg"] and "fal-ai/ok/*" in problem["msg"]

        for app in ("fal-ai/ok/one", "team/tool", "fal-ai/listed"):  # the catalog's app too
            created = await hosted.tasks.create(experimental(app, {"prompt": app}))
            assert (await hosted.tasks.finished(created["id"]))["status"] == "COMPLETED"
        assert [r.body["prompt"] for r in hosted.fal.requests("submit")] == [
            "fal-ai/ok/one",
            "team/tool",
            "fal-ai/listed",
        ]


async def test_an_empty_setting_runs_only_the_catalogs_apps(tmp_path: Path) -> None:
    async with hosted_server(tmp_path, tasks_fal_apps="") as hosted:
        refused = await hosted.tasks.client.post(
            "/api/v1/tasks/", json=experimental("fal-ai/other", {}), headers=ALICE
        )
        assert_validation_error(refused, ["body", "fal_app_id"])
        created = await hosted.tasks.create(experimental("fal-ai/listed", {"prompt": "x"}))
        assert (await hosted.tasks.finished(created["id"]))["status"] == "COMPLETED"
        assert hosted.fal.submit_count(accepted_only=False) == 1


async def test_a_tokens_fal_apps_claim_narrows_what_it_may_run(hosted: Hosted) -> None:
    narrow = auth("alice", fal_apps=["fal-ai/mine/*"])
    for app in ("fal-ai/other", "fal-ai/listed"):  # a catalog app is no exception
        resp = await hosted.tasks.client.post(
            "/api/v1/tasks/", json=experimental(app, {}), headers=narrow
        )
        detail = assert_detail(resp, 403)
        assert app in detail and "fal_apps" in detail
    created = await hosted.tasks.create(experimental("fal-ai/mine/app", {}), headers=narrow)
    assert (await hosted.tasks.finished(created["id"], narrow))["status"] == "COMPLETED"
    assert hosted.fal.submit_count(accepted_only=False) == 1


@pytest.mark.parametrize(
    "app",
    ["no-slash", "fal-ai/../admin", "https://evil.example/app", "fal-ai/a b", "/fal-ai/x"],
)
async def test_an_app_id_that_is_not_one_is_refused(hosted: Hosted, app: str) -> None:
    resp = await hosted.tasks.client.post(
        "/api/v1/tasks/", json=experimental(app, {}), headers=ALICE
    )
    [problem] = assert_validation_error(resp, ["body", "fal_app_id"])
    assert "owner/app" in problem["msg"]
    assert hosted.fal.submit_count(accepted_only=False) == 0


async def test_without_fal_credentials_an_unlisted_app_is_refused_naming_them(
    tmp_path: Path,
) -> None:
    catalog = parse_catalog(CATALOG, KNOWN_PROVIDERS, source="fal-apps-catalog")
    async with tasks_server(tmp_path, catalog=catalog) as tasks:
        resp = await tasks.client.post(
            "/api/v1/tasks/", json=experimental("fal-ai/not-listed", {}), headers=ALICE
        )
        assert "FAL_KEY" in assert_detail(resp, 503)


# -- PUT fal_app_id / fal_parameters ------------------------------------------------------------


async def test_put_changes_the_app_and_parameters_of_a_pending_task(tmp_path: Path) -> None:
    async with hosted_server(tmp_path, start_scheduler=False) as hosted:
        created = await hosted.tasks.create(experimental("fal-ai/first", {"prompt": "old"}))
        url = f"/api/v1/tasks/{created['id']}"

        resp = await hosted.tasks.client.put(
            url,
            json={"fal_app_id": "fal-ai/second", "fal_parameters": {"prompt": "new"}},
            headers=ALICE,
        )

        assert resp.status_code == 200, resp.text
        task = resp.json()
        assert task["fal_app_id"] == "fal-ai/second" and task["status"] == "PENDING"
        assert task["fal_parameters"] == {"prompt": "new"}
        assert (await hosted.tasks.get(created["id"]))["fal_app_id"] == "fal-ai/second"

        await hosted.tasks.gw.scheduler.start()
        try:
            done = await hosted.tasks.finished(created["id"])
        finally:
            await hosted.tasks.gw.scheduler.stop()
        assert done["status"] == "COMPLETED", done
        [submit] = hosted.fal.requests("submit")
        assert submit.path.endswith("/fal-ai/second") and submit.body == {"prompt": "new"}


async def test_put_of_a_refused_app_changes_nothing(tmp_path: Path) -> None:
    async with hosted_server(tmp_path, start_scheduler=False, tasks_fal_apps="fal-ai/*") as hosted:
        created = await hosted.tasks.create(experimental("fal-ai/first", {"prompt": "old"}))
        url = f"/api/v1/tasks/{created['id']}"

        resp = await hosted.tasks.client.put(
            url,
            json={"fal_app_id": "elsewhere/app", "fal_parameters": {"prompt": "new"}},
            headers=ALICE,
        )

        assert_validation_error(resp, ["body", "fal_app_id"])
        task = await hosted.tasks.get(created["id"])
        assert task["fal_app_id"] == "fal-ai/first" and task["fal_parameters"] == {"prompt": "old"}


async def test_put_of_the_fal_fields_of_a_finished_task_is_a_conflict(hosted: Hosted) -> None:
    created = await hosted.tasks.create(experimental("fal-ai/first", {"prompt": "old"}))
    await hosted.tasks.finished(created["id"])

    resp = await hosted.tasks.client.put(
        f"/api/v1/tasks/{created['id']}", json={"fal_parameters": {"prompt": "new"}}, headers=ALICE
    )

    assert "COMPLETED" in assert_detail(resp, 409)
    assert (await hosted.tasks.get(created["id"]))["fal_parameters"] == {"prompt": "old"}
