"""The web pages as HTML (gateway/web/routes.py): public catalog, filters, headers, escaping."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.support import running
from tests.conftest import make_settings
from tests.web.support import parse

FORMS = [
    "/",
    "/playground",
    "/playground?model=image-adjuster",
    "/playground?model=sandbox-edit",
    "/compare",
    "/jobs",
    "/jobs/job-0123456789abcdef",
    "/usage",
]
PAGES = [*FORMS, "/models/sandbox-image", "/docs"]


async def test_example_images_are_public_and_only_the_catalogs(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/examples/sandbox-image")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/png"
    assert resp.content.startswith(b"\x89PNG")
    assert (await client.get("/examples/sandbox-image")).content == resp.content
    assert (await client.get("/examples/flux-dev")).status_code == 404  # none in the catalog
    assert (await client.get("/examples/no-such-model")).status_code == 404


def shown_models(html: str) -> set[str]:
    return {
        str(li.attrs["data-id"])
        for li in parse(html).find("li")
        if "data-id" in li.attrs and "hidden" not in li.attrs
    }


async def test_catalog_is_public_and_lists_every_model(client: httpx.AsyncClient) -> None:
    resp = await client.get("/")  # no Authorization header
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    models = (await client.get("/v1/models", headers={"Authorization": "Bearer test-key-a"})).json()
    assert shown_models(resp.text) == {m["id"] for m in models["data"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?kind=video", {"sandbox-video", "ltx-video"}),
        ("?kind=video&provider=sandbox", {"sandbox-video"}),
        ("?provider=replicate&q=SDXL", {"sdxl"}),
        ("?q=nothing+matches+this", set()),
    ],
)
async def test_catalog_query_filters_the_list_without_javascript(
    client: httpx.AsyncClient, query: str, expected: set[str]
) -> None:
    resp = await client.get("/" + query)
    assert shown_models(resp.text) == expected


async def test_catalog_says_why_a_route_is_unavailable(client: httpx.AsyncClient) -> None:
    html = (await client.get("/models/flux-dev")).text
    assert "Unavailable" in html
    assert "FAL_KEY" in html
    assert "jobs only" not in html


@pytest.mark.parametrize("path", PAGES)
async def test_pages_have_a_strict_policy_and_no_inline_code(
    client: httpx.AsyncClient, path: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    page = parse(resp.text)
    for script in page.find("script"):
        assert script.attrs.get("src", "").startswith("/static/"), script  # type: ignore[union-attr]
        assert script.text.strip() == ""
    for element in page.elements:
        assert "style" not in element.attrs, element
        assert not [a for a in element.attrs if a.startswith("on")], element


@pytest.mark.parametrize("path", FORMS)
async def test_every_form_control_has_a_label(client: httpx.AsyncClient, path: str) -> None:
    page = parse((await client.get(path)).text)
    labelled = {label.attrs.get("for") for label in page.find("label")}
    controls = [e for e in page.elements if e.tag in ("input", "select", "textarea")]
    assert controls
    for control in controls:
        assert control.attrs.get("id") in labelled, control


async def test_key_field_cannot_be_submitted_with_a_form(client: httpx.AsyncClient) -> None:
    for path in ("/playground", "/jobs"):
        (key,) = parse((await client.get(path)).text).find("input", id="api-key")
        assert key.attrs["type"] == "password"
        assert "name" not in key.attrs  # so it never lands in a URL or a request body


async def test_catalog_text_is_escaped(tmp_path: Path) -> None:
    catalog = parse_catalog(
        {
            "models": [
                {
                    "id": "evil",
                    "kind": "image",
                    "description": '<script>alert("x")</script><img src=x onerror=alert(1)>',
                    "routes": [{"provider": "sandbox", "target": "image"}],
                }
            ]
        },
        KNOWN_PROVIDERS,
        source="evil.toml",
    )
    async with running(make_settings(tmp_path), catalog=catalog) as (client, _gw):
        for path in ("/", "/models/evil", "/playground?model=evil"):
            html = (await client.get(path)).text
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
            assert "<img src=x" not in html


async def test_unknown_model_page_is_a_404_page(client: httpx.AsyncClient) -> None:
    resp = await client.get("/models/no-such-model")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")
    assert "no-such-model" in resp.text
    assert (await client.get("/playground?model=no-such-model")).status_code == 404


async def test_model_page_examples_use_the_public_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, public_url="https://gw.example.com/")
    async with running(settings) as (client, _gw):
        html = (await client.get("/models/sandbox-upscale")).text
    assert html.count("https://gw.example.com/v1") >= 3
    assert "https://gw.example.com/v1/jobs/images" not in html  # upscale: the generic endpoint


async def test_model_page_examples_use_the_request_url_without_a_public_url(
    tmp_path: Path,
) -> None:
    async with running(make_settings(tmp_path, public_url=None)) as (client, _gw):
        html = (await client.get("/models/sandbox-image")).text
    assert "http://testserver/v1/jobs/images" in html


async def test_result_files_origin_is_allowed_for_images(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, public_url="https://gw.example.com/base")
    async with running(settings) as (client, _gw):
        csp = (await client.get("/playground")).headers["content-security-policy"]
    assert "img-src 'self' https://gw.example.com data: blob:;" in csp
    assert "media-src 'self' https://gw.example.com;" in csp


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("site.css", "text/css"), ("playground.js", "text/javascript"), ("favicon.svg", "image/svg")],
)
async def test_static_assets_are_served_and_not_sniffed(
    client: httpx.AsyncClient, name: str, media_type: str
) -> None:
    resp = await client.get(f"/static/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(media_type)
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_pages_link_assets_with_a_version(client: httpx.AsyncClient) -> None:
    page = parse((await client.get("/")).text)
    (css,) = page.find("link", rel="stylesheet")
    href = str(css.attrs["href"])
    assert href.startswith("/static/site.css?v=")
    assert (await client.get(href)).status_code == 200


async def test_a_catalog_card_shows_each_routes_price_or_that_it_is_unpriced(
    client: httpx.AsyncClient,
) -> None:
    def prices(html: str) -> list[str]:
        return re.findall(r'<span class="price">([^<]*)</span>', html)

    flux = await client.get("/models/flux-dev")
    sandbox = await client.get("/models/sandbox-image")

    assert prices(flux.text) == ["$0.025 per megapixel", "$0.025 per image"]
    assert prices(sandbox.text) == ["unpriced"]
