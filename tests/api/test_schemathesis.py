"""Schemathesis against the gateway's own ``GET /openapi.json``, every face, in process,
with every check schemathesis has (what ``schemathesis run --checks all`` runs).

Each operation of the document gets the examples, coverage and fuzzing phases' requests,
valid and invalid, with a valid API key (an ``admin`` one) or Tasks API token (per the
operation's security scheme); the stateful test then follows the document's links: create a
job, a ticket, a task or a key, and read, cancel, update or delete it. Every answer must be no
5xx, have a documented status, content type, schema and headers, a 405 must list the allowed
methods, valid data must be accepted and invalid data refused, a deleted resource must be
gone and a created one there, and credentials must be enforced. Where a check cannot hold for
a documented reason, ``EXCEPTIONS`` turns off that one check for that one operation, and says
why. The run is derandomized (the same cases on every run, so CI cannot flake) and bounded
(about a minute on two cores); ``BACKSERV_FUZZ_EXAMPLES=N`` runs N cases per operation for a
longer local hunt.

The gateway runs its real scheduler and the sandbox provider, so submitted jobs finish and
the synchronous OpenAI images endpoint answers 200. Host names do not resolve (a stand-in
resolver), so nothing here reaches the network whatever URL is generated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.engine import Status, events, from_schema
from schemathesis.specs.openapi import stateful
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from gateway import netguard
from gateway.api.openapi import DocumentOptions, build_document
from gateway.app import create_app
from gateway.auth import hash_key, key_id_for, new_key_record
from gateway.catalog import Catalog, load_catalog
from gateway.errors import UnresolvableHost
from gateway.store import create_store
from providers.registry import KNOWN_PROVIDERS
from tests.api.tasks_support import SECRET, token
from tests.conftest import ROOT, make_settings

#: cases per operation and generation mode (valid, invalid); more for a longer local hunt
EXAMPLES = int(os.environ.get("BACKSERV_FUZZ_EXAMPLES", "10"))
#: workflows along the document's links (create, then read, change, delete), and their length;
#: the run is derandomized, but which operations 80 workflows reach changed with each new
#: operation in the document: 200 reach every linked one (150 did before the video API)
SEQUENCES = int(os.environ.get("BACKSERV_FUZZ_SEQUENCES", "200"))
STEPS = 8
#: the ``admin`` key the requests carry, stored by the ``app`` fixture
ADMIN_KEY = "bsk_schemathesis-fuzzer-admin-key-0000000000"

_URLS = (
    "a URL (webhook_url, an input image) must name a host that resolves to public addresses "
    "only (README, Security), which no schema can say (and here no name resolves at all)"
)
_PER_MODEL = "a model may bound a field tighter than its kind (GET /v1/models shows its bounds)"
_REUSED_KEY = "an Idempotency-Key reused with another body is the documented 422"
#: (operationId, check) -> why that check cannot hold for that operation; every other check
#: holds for every operation
EXCEPTIONS: dict[tuple[str, str], str] = {
    **{
        (operation, "positive_data_acceptance"): "; ".join(
            (_URLS, "webhook_events needs a webhook_url", _PER_MODEL, _REUSED_KEY)
        )
        for operation in ("createImageJob", "createJob", "createImage")
    },
    ("backservSubmitTask", "positive_data_acceptance"): "; ".join((_URLS, _PER_MODEL, _REUSED_KEY)),
    ("backservCancelTask", "positive_data_acceptance"): "the seed's status codes have no "
    "409: the cancel of a finished task is its (documented) 400",
    ("listJobs", "positive_data_acceptance"): "'after' must be the id of one of the key's "
    "jobs (the last id of the previous page), which no schema can say",
    **{
        (operation, "positive_data_acceptance"): "a key's name must be printable (Python's "
        "str.isprintable: no control, format, separator or unassigned characters but the "
        "space), which JSON Schema's regular expressions cannot say without \\p{...} "
        "classes, which schemathesis' generators lack"
        for operation in ("createKey", "updateKey")
    },
    **{
        (operation, "positive_data_acceptance"): "; ".join(
            (
                "the request schemas are the seed document's, and a task runs on a catalog "
                "model whose own rules (a non-empty prompt, fal app ids, the providers the "
                "catalog has, image URLs) are the seed's 422",
                _REUSED_KEY,
            )
        )
        for operation in ("createTask", "createGenerationTask")
    },
    **{
        (operation, "positive_data_acceptance"): "as the update schema says: only the "
        "fields of the task's own type, and the gateway's own fields only as the task shows "
        "them (else the seed's 422)"
        for operation in ("updateTask", "updateGenerationTask")
    },
    **{
        (operation, "ensure_resource_availability"): "a GENERATION task is one task under "
        "two paths: DELETE /api/v1/tasks/{task_id} (a link of createGenerationTask) removes "
        "it from /api/v1/tasks/generation/{task_id} too, which the check (which matches "
        "paths) cannot know"
        for operation in ("getGenerationTask", "updateGenerationTask", "cancelGenerationTask")
    },
    ("createVideo", "positive_data_acceptance"): "; ".join(
        (
            _URLS,
            _PER_MODEL,
            _REUSED_KEY,
            "an input_reference must be a PNG, JPEG, WebP or GIF by its content",
        )
    ),
    ("createImageEdit", "positive_data_acceptance"): "; ".join(
        (
            _URLS,
            _PER_MODEL,
            _REUSED_KEY,
            "the image and mask must be PNG, JPEG, WebP or GIF files by their content, and a "
            "mask or a size reaches only the kinds that take one (the 400 names it)",
        )
    ),
    ("remixVideo", "positive_data_acceptance"): "; ".join(
        (_URLS, "only a completed video can be remixed (a queued one is the documented 400)")
    ),
    ("getVideoContent", "positive_data_acceptance"): "a video has content once it is "
    "completed (before, the documented 400)",
    ("listVideos", "positive_data_acceptance"): "'after' must be the id of one of the key's "
    "videos (the last id of the previous page), which no schema can say",
    ("getKey", "use_after_free"): "DELETE /v1/keys/{key_id} revokes the key: its record "
    "stays, readable, with status 'revoked' (as GET /v1/keys lists revoked keys)",
}


def config(**phases: Any) -> schemathesis.Config:
    exceptions: dict[str, dict[str, Any]] = {}
    for operation_id, check in EXCEPTIONS:
        exceptions.setdefault(operation_id, {})[check] = {"enabled": False}
    return schemathesis.Config.from_dict(
        {
            "seed": 20_240_601,
            "base-url": DOCUMENT["servers"][0]["url"],
            "generation": {"mode": "all", "deterministic": True, "max-examples": EXAMPLES},
            "phases": phases,
            # every check: what ``schemathesis run --checks all`` runs
            "checks": {"enabled": True},
            "operations": [
                {"include-operation-id": operation_id, "checks": checks}
                for operation_id, checks in exceptions.items()
            ],
            "auth": {
                "openapi": {
                    "ApiKey": {"bearer": ADMIN_KEY},
                    "TasksJWT": {"bearer": token({"sub": "fuzzer", "exp": time.time() + 3600})},
                }
            },
            "max-stream-events": 3,
            # nothing kept between runs (so every run makes the same cases)
            "cache": {"enabled": False},
        }
    )


def hypothesis_settings(examples: int) -> settings:
    return settings(
        deadline=None,
        derandomize=True,
        database=None,
        max_examples=examples,
        suppress_health_check=list(HealthCheck),
    )


async def _store_admin_key(database_url: str) -> None:
    """``ADMIN_KEY``, stored with the ``admin`` scope, so the key management face is reached."""
    store = create_store(database_url)
    await store.open()
    try:
        _, record = new_key_record("fuzzer", scopes="admin")
        digest = hash_key(ADMIN_KEY)
        record = dataclasses.replace(
            record, id=key_id_for(digest), key_hash=digest, prefix=ADMIN_KEY[:8]
        )
        await store.create_key(record)
    finally:
        await store.close()


async def _offline_resolve(
    host: str, port: int, *, param: str, timeout: float
) -> list[netguard.IPAddress]:
    """IP literals are their own address; no name resolves (no DNS, no network)."""
    try:
        return [netguard.ipaddress.ip_address(host)]
    except ValueError:
        raise UnresolvableHost(
            f"Invalid '{param}': the host '{host}' does not resolve.", param=param
        ) from None


SETTINGS = {
    "tasks_jwt_secret": SECRET,
    "sandbox_latency": 0.0,
    "sync_wait_seconds": 30.0,
    # only the catalog's fal apps: any other would need FAL_KEY (and the network)
    "tasks_fal_apps": "",
    # the fuzzer creates jobs far faster than one key's default limits allow: a 429 is
    # documented, but it would end the workflows that should reach the job operations
    "rate_limit_per_second": 0,
    "max_active_jobs_per_key": 0,
}
#: the catalog's models that run on the sandbox: a hosted model without its credentials is
#: answered with the documented 503 model_unavailable, a fact of the deployment, not a bug
CATALOG = Catalog(
    [
        model
        for model in load_catalog(ROOT / "catalog.toml", KNOWN_PROVIDERS)
        if all(route.provider == "sandbox" for route in model.routes)
    ],
    source="catalog.toml (its sandbox models)",
)
#: the document as the app below serves it, made at import so that each operation is a test
DOCUMENT = build_document(
    DocumentOptions(base_url=make_settings(Path("unused"), **SETTINGS).base_url), CATALOG
)
OPERATION_IDS = {
    f"{method.upper()} {path}": operation["operationId"]
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if isinstance(operation, dict) and "operationId" in operation
}


class CurrentApp:
    """The gateway of the running test, behind the one ASGI app the document is loaded with
    (at import, so that each operation is a test): every test gets a fresh gateway, whose
    lifespan schemathesis starts with the first request and ends with the test."""

    def __init__(self) -> None:
        self.app: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("no gateway: use the 'app' fixture")
        await self.app(scope, receive, send)


CURRENT = CurrentApp()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=config(stateful={"enabled": False}))
schema.app = CURRENT


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Starlette]:
    monkeypatch.setattr(netguard, "resolve", _offline_resolve)
    settings = make_settings(tmp_path, **SETTINGS)
    asyncio.run(_store_admin_key(settings.database_url))
    CURRENT.app = create_app(settings, catalog=CATALOG)
    yield CURRENT.app
    CURRENT.app = None


async def test_the_app_serves_the_document_tested_here(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/openapi.json")).json() == DOCUMENT


@schema.parametrize()
@hypothesis_settings(EXAMPLES)
def test_operation_conforms_to_the_document(case: Case, app: Starlette) -> None:
    """The examples, coverage and fuzzing phases of the operation, every check."""
    case.call_and_validate()


#: operations the workflows must reach along a link from what a create operation made
LINKED = {
    "getJob",
    "cancelJob",
    "streamJobEvents",
    "backservQueryTask",
    "backservCancelTask",
    "getTask",
    "updateTask",
    "cancelTask",
    "cleanupTask",
    "deleteTask",
    "getGenerationTask",
    "getKey",
    "updateKey",
    "revokeKey",
}


@pytest.fixture
def creates_start_workflows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schemathesis' dependency analysis takes 'origin_tenant_id', 'fal_app_id',
    'workflow_id' (Tasks API) and 'user_id' (Back.Serv) for ids of resources that no
    operation makes, and then never starts a workflow at the operations that take them: let
    a workflow start at any POST without path parameters, as it does for the other faces."""
    guess = stateful.is_likely_root_transition

    def likely_root(operation: Any, node: Any, produced_anywhere: set[str]) -> bool:
        creates = operation.method == "post" and not operation.path_parameters
        return creates or guess(operation, node, produced_anywhere)

    monkeypatch.setattr(stateful, "is_likely_root_transition", likely_root)


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("creates_start_workflows")
def test_workflows_along_the_links_conform_to_the_document(app: Starlette) -> None:
    """Schemathesis' stateful phase, as ``schemathesis run`` runs it: create a job, a
    ticket, a task or a key, then follow the document's links to read, cancel, update or
    delete it, every check on each answer — those of real resources, not only 404s."""
    workflows = schemathesis.openapi.from_dict(
        DOCUMENT,
        config=config(
            examples={"enabled": False},
            coverage={"enabled": False},
            fuzzing={"enabled": False},
            stateful={
                "max-steps": STEPS,
                # valid requests, so that each step makes something for the next to follow
                "generation": {"mode": "positive", "max-examples": SEQUENCES},
                # the document's links only: the links schemathesis infers from names here
                # mostly lead to the catalog's pages, and would spend the budget there
                "inference": {"algorithms": []},
            },
        ),
    )
    workflows.app = CURRENT
    failures: list[str] = []
    linked: set[str] = set()
    for event in from_schema(workflows).execute():
        if isinstance(event, events.FatalError):
            raise event.exception
        if isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: {event.info.format()}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        for case_id, node in recorder.cases.items():
            if node.transition is not None and node.is_transition_applied:
                linked.add(OPERATION_IDS[node.value.operation.label])
            for check in recorder.checks.get(case_id, []):
                if check.status is Status.FAILURE and check.failure_info is not None:
                    failure = check.failure_info.failure
                    failures.append(
                        f"{node.value.operation.label}: {check.name}: {failure.title}\n"
                        f"{failure.message}\n{check.failure_info.code_sample}"
                    )
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    assert not LINKED - linked, f"never reached along a link: {sorted(LINKED - linked)}"
