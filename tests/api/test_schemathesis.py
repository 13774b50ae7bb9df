"""Schemathesis against the gateway's own ``GET /openapi.json``, every face, in process.

Every operation of the document gets generated requests, valid and invalid, with a valid
API key or Tasks API token (per the operation's security scheme), and every answer must be
no 5xx, have a documented status and content type, and match its documented schema and
headers. The run is derandomized (the same cases on every run, so CI cannot flake) and
bounded (about a minute on two cores); ``BACKSERV_FUZZ_EXAMPLES=N`` runs N cases per
operation for a longer local hunt.

The gateway runs its real scheduler and the sandbox provider, so submitted jobs finish and
the synchronous OpenAI images endpoint answers 200. Host names do not resolve (a stand-in
resolver), so nothing here reaches the network whatever URL is generated.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import BaseSchema, Case, GenerationMode

from gateway import netguard
from gateway.api.openapi import build_document
from gateway.app import create_app
from gateway.auth import new_key_record
from gateway.catalog import Catalog, load_catalog
from gateway.errors import UnresolvableHost
from gateway.store import create_store
from providers.registry import KNOWN_PROVIDERS
from tests.api.tasks_support import SECRET, token
from tests.conftest import ROOT, make_settings

#: cases per operation and generation mode (valid, invalid); more for a longer local hunt
EXAMPLES = int(os.environ.get("BACKSERV_FUZZ_EXAMPLES", "10"))
#: sequences of calls along the document's links (create, then read, change, delete)
SEQUENCES = int(os.environ.get("BACKSERV_FUZZ_SEQUENCES", "30"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


def config(api_key: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 20_240_601,
            "generation": {"mode": "all", "deterministic": True, "max-examples": EXAMPLES},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "auth": {
                "openapi": {
                    "ApiKey": {"bearer": api_key},
                    "TasksJWT": {"bearer": token({"sub": "fuzzer", "exp": time.time() + 3600})},
                }
            },
            "max-stream-events": 3,
            # nothing kept between runs (so every run makes the same cases)
            "cache": {"enabled": False},
        }
    )


def hypothesis_settings(examples: int, **more: Any) -> settings:
    return settings(
        deadline=None,
        derandomize=True,
        database=None,
        max_examples=examples,
        suppress_health_check=list(HealthCheck),
        **more,
    )


async def _admin_key(database_url: str) -> str:
    """A stored ``admin`` key, so the key management face is reached too."""
    store = create_store(database_url)
    await store.open()
    try:
        key, record = new_key_record("fuzzer", scopes="admin")
        await store.create_key(record)
    finally:
        await store.close()
    return key


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
}
METHODS = ("get", "put", "post", "delete", "patch")
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
DOCUMENT = build_document(make_settings(Path("unused"), **SETTINGS), CATALOG)
OPERATIONS = [
    (path, method.upper())
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in METHODS
]


@pytest.fixture
def api_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BaseSchema:
    """The document a fresh gateway serves; schemathesis runs the app's lifespan (and ends
    it when the test ends)."""
    monkeypatch.setattr(netguard, "resolve", _offline_resolve)
    settings = make_settings(tmp_path, **SETTINGS)
    key = asyncio.run(_admin_key(settings.database_url))
    app = create_app(settings, catalog=CATALOG)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(key))
    assert loaded.raw_schema == DOCUMENT
    return loaded


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_operation_conforms_to_the_document(api_schema: BaseSchema, path: str, method: str) -> None:
    operation = api_schema[path][method]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(mode))
        @hypothesis_settings(EXAMPLES)
        def run(case: Case) -> None:
            case.call_and_validate()

        try:
            run()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            # nothing of this operation can be made invalid (no parameters, no body)


@pytest.mark.timeout(300)
def test_workflows_along_the_links_conform_to_the_document(api_schema: BaseSchema) -> None:
    """Create a job, a ticket, a task or a key, then follow the document's links to read,
    cancel, update or delete it: the answers of real resources, not only their 404s."""
    machine = api_schema.as_state_machine()
    machine.run(settings=hypothesis_settings(SEQUENCES, stateful_step_count=6))
