"""The models face: the catalog in OpenAI list format, with kinds, parameters and routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, principal
from gateway.catalog import Catalog, CatalogModel
from gateway.errors import InvalidRequest
from gateway.kinds import KINDS
from gateway.scheduler.availability import Availability


class ModelsAPI:
    def __init__(self, catalog: Catalog, availability: Availability) -> None:
        self.catalog = catalog
        self.availability = availability

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"]),
        ]

    def describe(self, model: CatalogModel) -> dict[str, Any]:
        routes = self.availability.routes(model)
        return {
            "id": model.id,
            "object": "model",
            "created": model.created,
            "owned_by": model.owned_by,
            "kind": model.kind.name,
            "description": model.description,
            "jobs_only": model.jobs_only,
            "available": any(r["available"] for r in routes),
            "parameters": model.parameters(),
            "routes": routes,
        }

    async def list_models(self, request: Request) -> Response:
        await principal(request)
        kind = request.query_params.get("kind")
        if kind is not None and kind not in KINDS:
            raise InvalidRequest(
                f"Invalid 'kind': must be one of {', '.join(KINDS)}.",
                param="kind",
                code="invalid_value",
            )
        data = [self.describe(m) for m in self.catalog if kind is None or m.kind.name == kind]
        return json({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        await principal(request)
        return json(self.describe(self.catalog.get(request.path_params["model_id"])))
