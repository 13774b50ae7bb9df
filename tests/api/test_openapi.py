"""``GET /openapi.json``: a valid OpenAPI 3.1 document that covers every route the app mounts.

The route check walks the app's real routing table, so a route added without a line in
``gateway/api/openapi/`` fails here; and the Tasks API's answers (whose fields are written by
hand in ``task_objects.py``) are rendered for every task type and checked against it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, Router

from gateway.api.openapi.task_objects import public_name
from gateway.api.tasks.render import Renderer
from gateway.api.tasks.schemas import TASK_KINDS, TaskType
from gateway.app import Gateway, create_app
from gateway.jobs import Attempt, Job, Status, new_job_id
from gateway.results import ResultLinks
from tests.conftest import AUTH_A, make_settings

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
SECRET = "openapi-test-secret-0123456789abcdefghij"


async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    resp = await client.get("/openapi.json")  # no Authorization: the document is public
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = resp.json()
    return body


def mounted(routes: list[BaseRoute], prefix: str = "") -> dict[str, set[str]]:
    """Every (OpenAPI-style path -> methods) the routing table serves; HEAD goes with GET."""
    out: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, Route):
            path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", prefix + route.path)
            out.setdefault(path, set()).update(m.lower() for m in route.methods or ())
        elif isinstance(route, Mount):
            app = route.app
            if isinstance(app, Starlette | Router):
                for path, methods in mounted(list(app.routes), prefix + route.path).items():
                    out.setdefault(path, set()).update(methods)
            else:  # a plain ASGI app (the static files) serves everything under its prefix
                out.setdefault(prefix + route.path + "/{path}", set()).add("get")
    for methods in out.values():
        methods.discard("head")
    return out


@dataclass
class Served:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def gw(self) -> Gateway:
        gw: Gateway = self.app.state.gateway
        return gw


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **settings: Any) -> AsyncIterator[Served]:
    app = create_app(make_settings(tmp_path, **settings), start_scheduler=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Served(app, client)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path, tasks_jwt_secret=SECRET) as served:
        yield served


async def test_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    # with a metrics token: the variant with every security scheme
    async with serving(tmp_path, tasks_jwt_secret=SECRET, metrics_token="m-token") as served:
        doc = await document(served.client)
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # openapi-spec-validator: structure, $refs, path parameters, operation ids
    assert doc["paths"]["/metrics"]["get"]["security"] == [{"MetricsToken": []}]
    assert "MetricsToken" in doc["components"]["securitySchemes"]


async def test_every_mounted_route_is_documented_and_nothing_else(served: Served) -> None:
    doc = await document(served.client)
    documented = {path: {m for m in item if m in METHODS} for path, item in doc["paths"].items()}
    routes = mounted(list(served.app.routes))
    assert set(routes) == set(documented), (
        f"undocumented: {sorted(set(routes) - set(documented))}; "
        f"documented, not mounted: {sorted(set(documented) - set(routes))}"
    )
    for path, methods in routes.items():
        assert documented[path] <= methods, (path, documented[path] - methods)
        for method in sorted(methods - documented[path]):
            # an undocumented method must be a refusal: the Back.Serv task API routes every
            # other method of its paths to a 405 in its own dialect
            url = path.replace("{ticket_id}", "t-1")
            resp = await served.client.request(method.upper(), url)
            assert resp.status_code == 405, (method, path, resp.status_code)


#: what each create operation makes, and the operations that take its id from the answer
CREATED = {
    "createImageJob": ("getJob", "cancelJob", "streamJobEvents"),
    "createJob": ("getJob", "cancelJob", "streamJobEvents"),
    "createImage": ("getJob", "cancelJob", "streamJobEvents"),
    "backservSubmitTask": ("backservQueryTask", "backservCancelTask"),
    "createTask": ("getTask", "updateTask", "cancelTask", "cleanupTask", "deleteTask"),
    "createGenerationTask": ("getGenerationTask", "updateGenerationTask", "deleteTask"),
    "createKey": ("getKey", "updateKey", "revokeKey"),
}


async def test_create_operations_link_to_the_operations_on_what_they_created(
    served: Served,
) -> None:
    """The links schemathesis' stateful phase follows (tests/api/test_schemathesis.py)."""
    doc = await document(served.client)
    operations = {
        op["operationId"]: op
        for item in doc["paths"].values()
        for method, op in item.items()
        if method in METHODS
    }
    for creator, targets in CREATED.items():
        answers = operations[creator]["responses"]
        ok = next(answers[code] for code in ("200", "201", "202") if code in answers)
        linked = {link["operationId"] for link in ok.get("links", {}).values()}
        assert set(targets) <= linked, (creator, set(targets) - linked)
        for link in ok["links"].values():
            assert link["operationId"] in operations, link
            (parameter,) = link["parameters"]
            path_parameters = {
                p["name"]
                for p in operations[link["operationId"]]["parameters"]
                if p["in"] == "path"
            }
            assert parameter in path_parameters, (creator, link)


async def test_document_follows_the_settings(tmp_path: Path) -> None:
    async with serving(
        tmp_path, metrics_enabled=False, submit_task_auth="none", tasks_jwt_secret=SECRET
    ) as served:
        doc = await document(served.client)
    assert "/metrics" not in doc["paths"]
    assert doc["paths"]["/submit_task"]["post"]["security"] == []
    assert "401" not in doc["paths"]["/submit_task"]["post"]["responses"]
    branches = doc["components"]["schemas"]["JobRequest"]["oneOf"]
    models = {model for branch in branches for model in branch["properties"]["model"]["enum"]}
    assert "sandbox-image" in models and "sandbox-video" in models
    image_models = doc["components"]["schemas"]["ImageJobRequest"]["properties"]["model"]
    assert "sandbox-video" not in image_models["enum"]


def _validator(doc: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": f"#/components/schemas/{name}",
            "components": doc["components"],
        }
    )


async def test_a_jobs_input_and_a_tasks_params_are_those_of_its_models_kind(
    served: Served,
) -> None:
    """POST /v1/jobs takes the input of its model's kind, POST /submit_task the params of its
    task type's: the document does not let one kind's input go with another's model."""
    doc = await document(served.client)
    job, task = _validator(doc, "JobRequest"), _validator(doc, "SubmitTaskRequest")
    image = {"prompt": "a fox"}
    upscale = {"image_url": "https://example.com/fox.png"}
    assert job.is_valid({"model": "sandbox-image", "input": image})
    assert job.is_valid({"model": "sandbox-upscale", "input": upscale})
    assert not job.is_valid({"model": "sandbox-image", "input": upscale})
    assert not job.is_valid({"model": "sandbox-upscale", "input": image})
    assert task.is_valid({"task_type": "image_creation", "task_params": image, "user_id": "u"})
    assert task.is_valid({"task_type": "image_upscale", "task_params": upscale, "user_id": "u"})
    assert not task.is_valid(
        {"task_type": "image_creation", "task_params": upscale, "user_id": "u"}
    )
    assert not task.is_valid({"task_type": "face_swap", "task_params": image, "user_id": "u"})


async def test_an_optional_input_field_takes_null_for_its_default(served: Served) -> None:
    """The faces read a null as the field's default (``Kind.validate``), and so does the
    document; a required field still refuses it."""
    doc = await document(served.client)
    job = _validator(doc, "JobRequest")
    video = {"prompt": "x", "height": None, "fps": None, "seed": None}
    assert job.is_valid({"model": "sandbox-video", "input": video})
    resp = await served.client.post(
        "/v1/jobs",
        json={"model": "sandbox-video", "input": video},
        headers=AUTH_A,
    )
    assert resp.status_code == 202, resp.text
    assert not job.is_valid({"model": "sandbox-video", "input": {"prompt": None}})


def _job(task_type: TaskType, gw: Gateway, *, completed: bool) -> Job:
    kind = TASK_KINDS[task_type]
    model = next(m for m in gw.catalog if m.kind.name == kind)
    now = time.time()
    job = Job(
        id=new_job_id(),
        owner="alice",
        kind=kind,
        model=model.id,
        input={},
        lane=model.lane,
        meta={"task_type": task_type.value, "origin_instance": "test"},
        created_at=now,
        updated_at=now,
    )
    if completed:
        job.status = Status.COMPLETED
        job.started_at = job.completed_at = now
        job.attempts = [Attempt(1, "fal:fal-ai/x", 0, "fal", "r-1", started_at=now)]
        job.result = {
            "files": [{"name": "out.png", "content_type": "image/png", "width": 8, "height": 8}],
            "seed": 1,
        }
    return job


@pytest.mark.parametrize("task_type", list(TaskType))
async def test_task_answers_match_the_document(served: Served, task_type: TaskType) -> None:
    gw = served.gw
    doc = await document(served.client)
    validator = _validator(doc, public_name(task_type))
    renderer = Renderer(gw.catalog, ResultLinks(gw.signer, 3600), gw.storage)
    for completed in (False, True):
        task = await renderer.task(_job(task_type, gw, completed=completed))
        errors = [e.message for e in validator.iter_errors(task)]
        assert not errors, (task_type, completed, errors)
