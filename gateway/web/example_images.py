"""``GET /examples/{model_id}``: the example image of a model's card in the catalog.

A catalog entry's ``example`` is an image file shipped beside the catalog, or a prompt the
sandbox renders (``render``, given by the composition root: faces do not import providers).
A rendering is made once per process and kept; a file is read from disk each time (the OS
caches it). Public, like the catalog: never a job's output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from gateway.catalog import Catalog
from gateway.errors import UnknownModel

Render = Callable[[str], bytes]
HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}


class ExampleImages:
    def __init__(self, catalog: Catalog, render: Render | None) -> None:
        self.catalog = catalog
        self.render = render
        self._rendered: dict[str, bytes] = {}

    async def serve(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            model = self.catalog.get(model_id)
        except UnknownModel:
            model = None
        example = model.example if model else None
        if model is None or example is None:
            return Response("No example image for this model.", 404, media_type="text/plain")
        if example.image is not None:
            data = await asyncio.to_thread(example.image.read_bytes)
        elif example.prompt is not None and self.render is not None:
            data = self._rendered.get(model.id) or b""
            if not data:
                data = await asyncio.to_thread(self.render, example.prompt)
                self._rendered[model.id] = data
        else:
            return Response("No example image for this model.", 404, media_type="text/plain")
        return Response(data, media_type=example.content_type, headers=HEADERS)
