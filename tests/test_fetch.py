"""The fetch guard (gateway/fetch.py) against real loopback servers, and SSRF attempts.

Loopback is what the guard refuses, so tests that must reach the server allow-list it
(``127.0.0.1`` as a network, or ``localhost`` as a name); the refusals use no allow-list, or
one that covers the first hop only.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway import fetch, netguard
from gateway.errors import InvalidRequest, ProviderUnavailable, UnsafeURL
from gateway.fetch import FetchFailed, GuardedFetcher, fetch_guarded
from gateway.netguard import AllowList
from gateway.storage import LocalStorage, OutputSource
from providers.base import Output, ProviderInputError
from providers.local_inputs import fetch_input
from tests.emulators.server import serve
from tests.fakes import PNG

LOOPBACK = AllowList.parse("127.0.0.1")


async def image(request: Request) -> Response:
    return Response(PNG, media_type="image/png")


async def host(request: Request) -> Response:
    return Response(request.headers.get("host", "").encode(), media_type="text/plain")


async def big(request: Request) -> Response:
    return Response(b"x" * 5000, media_type="image/png")


async def endless(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 400

    return StreamingResponse(chunks(), media_type="image/png")


async def slow(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"
        await asyncio.sleep(10)
        yield b"y"

    return StreamingResponse(chunks(), media_type="image/png")


async def redirect(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"], status_code=302)


async def loop(request: Request) -> Response:
    return RedirectResponse("/loop", status_code=302)


async def peer(request: Request) -> Response:
    """The client's port: one per connection, so a test sees which fetches shared one."""
    port = request.client.port if request.client else 0
    return Response(str(port).encode(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/img", image),
        Route("/host", host),
        Route("/big", big),
        Route("/endless", endless),
        Route("/slow", slow),
        Route("/redirect", redirect),
        Route("/loop", loop),
        Route("/peer", peer),
    ]
)


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with serve(APP) as url:
        yield url


async def get(url: str, allow: AllowList = LOOPBACK, **kwargs: Any) -> tuple[bytes, str]:
    options: dict[str, Any] = {"max_bytes": 1000, "timeout": 5.0} | kwargs
    return await fetch_guarded(url, allow=allow, **options)


# -- what is allowed works ---------------------------------------------------------------


async def test_an_allow_listed_loopback_address_is_fetched(base: str) -> None:
    assert await get(f"{base}/img") == (PNG, "image/png")


async def test_a_relative_redirect_is_followed_and_checked(base: str) -> None:
    assert await get(f"{base}/redirect?to=/img") == (PNG, "image/png")


async def test_the_connection_goes_to_the_checked_address_not_the_name(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that only the guard's resolver knows: the request can only reach the server
    at the address the guard checked (pinned), with the name kept in the Host header."""
    real = netguard.resolve

    async def fake(name: str, port: int, *, param: str, timeout: float) -> list[netguard.IPAddress]:
        if name == "pinned.invalid":
            return [ipaddress.ip_address("127.0.0.1")]
        return await real(name, port, param=param, timeout=timeout)

    monkeypatch.setattr(netguard, "resolve", fake)
    port = base.rsplit(":", 1)[1]
    body, _ = await get(f"http://pinned.invalid:{port}/host")
    assert body == f"pinned.invalid:{port}".encode()


# -- SSRF attempts are refused -------------------------------------------------------------


async def test_loopback_without_an_allow_list_is_refused(base: str) -> None:
    with pytest.raises(UnsafeURL, match=r"127\.0\.0\.1"):
        await get(f"{base}/img", allow=AllowList())


async def test_the_cloud_metadata_address_is_refused() -> None:
    with pytest.raises(UnsafeURL, match=r"169\.254\.169\.254"):
        await get("http://169.254.169.254/latest/meta-data/", allow=LOOPBACK)


async def test_a_name_resolving_to_loopback_is_refused(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    with pytest.raises(UnsafeURL, match="localhost"):
        await get(f"http://localhost:{port}/img", allow=AllowList())


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://127.0.0.1:{port}/img"],
)
async def test_a_redirect_to_a_private_address_is_refused(base: str, target: str) -> None:
    """The first hop is allowed (``localhost`` by name); where it redirects to is not."""
    port = base.rsplit(":", 1)[1]
    to = target.format(port=port)
    with pytest.raises(UnsafeURL, match="redirected"):
        await get(f"http://localhost:{port}/redirect?to={to}", allow=AllowList.parse("localhost"))


async def test_too_many_redirects_are_refused(base: str) -> None:
    with pytest.raises(FetchFailed) as caught:
        await get(f"{base}/loop")
    assert caught.value.reason == "redirects"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/"])
async def test_schemes_other_than_http_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest):
        await get(url)


# -- size, time and type limits ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big", "/endless"])
async def test_a_body_over_the_limit_is_refused(base: str, path: str) -> None:
    with pytest.raises(FetchFailed) as caught:
        await get(f"{base}{path}", max_bytes=1000)
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize("declared", ["\u00b2".encode("latin-1"), b"9" * 5000])
async def test_a_content_length_that_is_not_plain_digits_leaves_the_real_size_to_judge(
    declared: bytes,
) -> None:
    headers = [(b"content-type", b"image/png"), (b"content-length", declared)]
    url = "http://127.0.0.1/img"

    with respx.mock:
        respx.get(url).mock(return_value=httpx.Response(200, headers=headers, content=PNG))
        assert await get(url, max_bytes=len(PNG)) == (PNG, "image/png")
        with pytest.raises(FetchFailed) as caught:
            await get(url, max_bytes=len(PNG) - 1)
    assert caught.value.reason == "too_large"


async def test_a_slow_body_runs_into_the_time_limit(base: str) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(FetchFailed) as caught:
        await get(f"{base}/slow", timeout=0.5)
    assert caught.value.reason == "timeout"
    assert asyncio.get_running_loop().time() - started < 3


async def test_a_type_outside_accept_is_refused(base: str) -> None:
    with pytest.raises(FetchFailed) as caught:
        await get(f"{base}/host", accept=("image/",))
    assert caught.value.reason == "content_type"


# -- the call sites ------------------------------------------------------------------------


async def test_local_inputs_refuse_loopback_as_an_input_error(base: str) -> None:
    with pytest.raises(ProviderInputError) as caught:
        await fetch_input(f"{base}/img", "image_url", fetch=None, max_bytes=1000, timeout=5)
    assert caught.value.param == "image_url"
    assert (
        await fetch_input(
            f"{base}/img", "image_url", fetch=None, max_bytes=1000, timeout=5, allow=LOOPBACK
        )
        == PNG
    )


async def test_output_mirroring_refuses_the_metadata_address(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, OutputSource(max_bytes=1000))
    with pytest.raises(ProviderUnavailable, match="refused"):
        async with storage.sources.open(
            Output("image/png", url="http://169.254.169.254/latest/meta-data/")
        ):
            pass


async def test_output_mirroring_from_an_allow_listed_host_works(tmp_path: Path, base: str) -> None:
    storage = LocalStorage(tmp_path, OutputSource(max_bytes=1000, allow=LOOPBACK))
    async with storage.sources.open(Output("image/jpeg", url=f"{base}/img")) as (kind, chunks):
        assert (b"".join([c async for c in chunks]), kind) == (PNG, "image/png")


async def test_fetches_share_one_tls_context(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a TLS context loads the CA bundle (tens of milliseconds on the event loop):
    every fetch reuses the one built first, so downloads of results do not pay it each."""
    built: list[object] = []
    real = httpx.create_ssl_context

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(object())
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    fetch.tls_context.cache_clear()
    try:
        for _ in range(3):
            body, _ = await get(f"{base}/img")
            assert body
    finally:
        fetch.tls_context.cache_clear()
    assert len(built) == 1


# -- one long-lived fetcher ------------------------------------------------------------------


@pytest.fixture
async def fetcher() -> AsyncIterator[GuardedFetcher]:
    shared = GuardedFetcher()
    yield shared
    await shared.aclose()


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Host names only the guard's resolver knows (name -> address); edit it to re-point."""
    table: dict[str, str] = {}
    real = netguard.resolve

    async def fake(name: str, port: int, *, param: str, timeout: float) -> list[netguard.IPAddress]:
        if name in table:
            return [ipaddress.ip_address(table[name])]
        return await real(name, port, param=param, timeout=timeout)

    monkeypatch.setattr(netguard, "resolve", fake)
    return table


async def test_a_fetcher_serves_many_downloads_with_one_client_and_connection(
    base: str, fetcher: GuardedFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []

    class Counting(fetch.LeanHttpClient):
        def __init__(self, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(**kwargs)

    monkeypatch.setattr(fetch, "LeanHttpClient", Counting)
    ports = {(await get(f"{base}/peer", fetcher=fetcher))[0] for _ in range(5)}
    assert (len(built), len(ports)) == (1, 1)


async def test_a_connection_is_shared_only_by_requests_to_the_same_host_name(
    base: str, fetcher: GuardedFetcher, names: dict[str, str]
) -> None:
    """Two names at one address get a connection each, as TLS (SNI, certificate) needs."""
    names.update({"a.invalid": "127.0.0.1", "b.invalid": "127.0.0.1"})
    port = base.rsplit(":", 1)[1]
    a1, b, a2 = [
        (await get(f"http://{name}:{port}/peer", fetcher=fetcher))[0]
        for name in ("a.invalid", "b.invalid", "a.invalid")
    ]
    assert a1 == a2 != b


async def test_a_shared_fetcher_refuses_private_addresses_and_redirects_to_them(
    base: str, fetcher: GuardedFetcher
) -> None:
    port = base.rsplit(":", 1)[1]
    assert await get(f"{base}/img", fetcher=fetcher) == (PNG, "image/png")  # a pooled connection
    with pytest.raises(UnsafeURL, match=r"127\.0\.0\.1"):
        await get(f"{base}/img", allow=AllowList(), fetcher=fetcher)
    by_name = AllowList.parse("localhost")
    assert await get(f"http://localhost:{port}/img", allow=by_name, fetcher=fetcher)
    with pytest.raises(UnsafeURL, match="redirected"):
        await get(f"http://localhost:{port}/redirect?to={base}/img", allow=by_name, fetcher=fetcher)


async def test_a_pooled_connection_is_not_used_once_the_name_resolves_to_a_refused_address(
    base: str, fetcher: GuardedFetcher, names: dict[str, str]
) -> None:
    names["cdn.invalid"] = "127.0.0.1"
    url = f"http://cdn.invalid:{base.rsplit(':', 1)[1]}/img"
    assert await get(url, fetcher=fetcher) == (PNG, "image/png")
    names["cdn.invalid"] = "10.0.0.7"
    with pytest.raises(UnsafeURL, match=r"10\.0\.0\.7"):
        await get(url, fetcher=fetcher)


async def test_the_fetchers_client_never_connects_where_the_guard_did_not_check(
    base: str, fetcher: GuardedFetcher
) -> None:
    with pytest.raises(httpx.ConnectError, match="not checked"):
        await fetcher.client(LOOPBACK).open_get(httpx.URL(f"{base}/img"), timeout=5)


async def test_a_closed_fetcher_closes_its_clients_and_takes_no_more_fetches(
    base: str,
) -> None:
    fetcher = GuardedFetcher()
    await get(f"{base}/img", fetcher=fetcher)
    client = fetcher.client(LOOPBACK)
    await fetcher.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await get(f"{base}/img", fetcher=fetcher)


async def test_a_burst_of_downloads_waits_its_turn_outside_the_connection_pool() -> None:
    """Thousands of deliveries may finish at once: at most MAX_CONNECTIONS downloads are in
    the HTTP stack together, the rest wait in the fetcher's gate, and every one completes."""
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return httpx.Response(200, content=b"x", headers={"content-type": "image/png"})

    shared = GuardedFetcher()
    allow = AllowList.parse("example.test")
    try:
        with respx.mock:
            respx.get(url__regex=r"^https://example\.test/").mock(side_effect=handler)
            bodies = await asyncio.gather(
                *(
                    shared.fetch(
                        f"https://example.test/{n}.png", allow=allow, max_bytes=10, timeout=30
                    )
                    for n in range(fetch.MAX_CONNECTIONS * 3)
                )
            )
    finally:
        await shared.aclose()
    assert [b for b, _ in bodies] == [b"x"] * (fetch.MAX_CONNECTIONS * 3)
    assert peak == fetch.MAX_CONNECTIONS
