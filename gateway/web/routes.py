"""The web face, served at ``/``: catalog, model pages, playground, side by side, jobs, a
job's page and the API reference, as HTML.

The catalog and model pages are public: they are rendered here from the catalog, the
routes' availability and this gateway's recent latencies, with no key. The playground, the
side-by-side page and the jobs pages are pages whose scripts call the JSON API from the
browser with the key the user pasted; the key stays in the tab's ``sessionStorage`` and leaves
it only as an ``Authorization`` header, never in a URL or a form.

Every page is autoescaped Jinja2 and carries a strict Content-Security-Policy: scripts and
styles only from ``/static/`` (nothing inline, nothing from another origin), so the pages work
offline and an injected ``<script>`` would not run. Images may also be ``data:`` and ``blob:``
URLs: the previews of images a user uploads, a job's inline input images, and the icons in
Swagger UI's stylesheet (``/docs``, vendored under ``static/vendor/``); an image cannot run
code, so this widens nothing a script could use.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway.catalog import Catalog
from gateway.errors import UnknownModel
from gateway.jobs import Status
from gateway.scheduler.availability import Availability
from gateway.web.example_images import ExampleImages, Render
from gateway.web.examples import examples
from gateway.web.latency import Latencies, Latency
from gateway.web.view import CatalogView, ModelView

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
SWAGGER_UI_VERSION = "5.32.0"  # static/vendor/swagger-ui/VERSION


def content_security_policy(files_url: str) -> str:
    """Same origin only; result files may also come from the public URL's origin."""
    parts = urlsplit(files_url)
    files = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src 'self'{files} data: blob:; media-src 'self'{files}; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


class StaticAssets(StaticFiles):
    """The pages' scripts and styles, marked ``nosniff`` like the pages themselves."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _asset_version() -> str:
    """A digest of the static files, appended to their URLs so a new release is fetched
    (the vendored files carry their own release in their path's query instead)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in STATIC.iterdir() if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


class WebPages:
    def __init__(
        self,
        catalog: Catalog,
        availability: Availability,
        *,
        base_url: str,
        public_url: str | None,
        latencies: Latencies | None = None,
        render_example: Render | None = None,
    ) -> None:
        """``base_url``: the gateway's own origin for the pages' CSP; ``public_url``: the
        URL clients reach it at, when set (else the one a page was requested at);
        ``latencies``: recent latencies per model; ``render_example``: draws a catalog
        example's prompt (the sandbox's renderer)."""
        self.view = CatalogView(catalog, availability)
        self.public_url = public_url
        self.latencies = latencies
        self.examples = ExampleImages(catalog, render_example)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        version = _asset_version()
        self.env.globals["asset"] = lambda name: f"/static/{name}?v={version}"
        self.env.globals["swagger_ui_version"] = SWAGGER_UI_VERSION
        self.headers = {
            "Content-Security-Policy": content_security_policy(base_url),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.catalog_page, methods=["GET"]),
            Route("/models/{model_id:path}", self.model_page, methods=["GET"]),
            Route("/examples/{model_id:path}", self.examples.serve, methods=["GET"]),
            Route("/playground", self.playground_page, methods=["GET"]),
            Route("/compare", self.compare_page, methods=["GET"]),
            Route("/jobs", self.jobs_page, methods=["GET"]),
            Route("/usage", self.usage_page, methods=["GET"]),
            Route("/jobs/{job_id}", self.job_page, methods=["GET"]),
            Route("/docs", self.docs_page, methods=["GET"]),
            Mount("/static", app=StaticAssets(directory=STATIC), name="static"),
        ]

    def render(
        self, name: str, status_code: int = 200, headers: dict[str, str] | None = None, **ctx: Any
    ) -> Response:
        html = self.env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code, headers=headers or self.headers)

    def base_url(self, request: Request) -> str:
        """The URL clients reach this gateway at: the public URL, else the one the page used."""
        return (self.public_url or str(request.base_url)).rstrip("/")

    async def latency(self) -> dict[str, Latency]:
        return await self.latencies.by_model() if self.latencies is not None else {}

    async def catalog_page(self, request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        kind = request.query_params.get("kind", "")
        provider = request.query_params.get("provider", "")
        available = request.query_params.get("available") == "1"
        models = self.view.models()
        shown = {m.id for m in models if m.matches(q, kind, provider, available)}
        return self.render(
            "catalog.html",
            nav="catalog",
            groups=[
                ("models", "Models", [m for m in models if not m.sandbox]),
                ("sandbox", "Sandbox models", [m for m in models if m.sandbox]),
            ],
            count=len(models),
            shown=shown,
            latency=await self.latency(),
            q=q,
            kind=kind,
            provider=provider,
            available=available,
            kinds=self.view.kinds(),
            providers=self.view.providers(),
        )

    async def model_page(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            model = self.view.model(model_id)
        except UnknownModel:
            return self.render("not_found.html", 404, nav="catalog", model_id=model_id)
        return self.render(
            "model.html",
            nav="catalog",
            model=model,
            latency=await self.latency(),
            examples=examples(model, self.base_url(request)),
        )

    async def playground_page(self, request: Request) -> Response:
        models = self.view.models()
        wanted = request.query_params.get("model")
        model: ModelView | None
        if wanted:
            try:
                model = self.view.model(wanted)
            except UnknownModel:
                return self.render("not_found.html", 404, nav="playground", model_id=wanted)
        else:  # the first model that can run now, else the first one
            model = next((m for m in models if m.available), models[0]) if models else None
        return self.render(
            "playground.html",
            nav="playground",
            models=models,
            model=model,
            base_url=self.base_url(request),
        )

    async def compare_page(self, request: Request) -> Response:
        models = [m for m in self.view.models() if m.prompted]
        wanted = request.query_params.getlist("model")
        ready = [m.id for m in models if m.available]
        chosen = [m for m in wanted if m in {x.id for x in models}][:4] or ready[:2]
        return self.render(
            "compare.html",
            nav="compare",
            models=models,
            chosen=chosen,
            latency=await self.latency(),
            base_url=self.base_url(request),
        )

    async def jobs_page(self, request: Request) -> Response:
        return self.render("jobs.html", nav="jobs", statuses=[s.value for s in Status])

    async def usage_page(self, request: Request) -> Response:
        return self.render("usage.html", nav="usage", base_url=self.base_url(request))

    async def job_page(self, request: Request) -> Response:
        return self.render(
            "job.html",
            nav="jobs",
            job_id=request.path_params["job_id"],
            base_url=self.base_url(request),
        )

    async def docs_page(self, request: Request) -> Response:
        return self.render("docs.html", nav="docs")
