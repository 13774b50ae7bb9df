"""CPU time of the gateway's outgoing calls on the hosted path, before and after issue 16's
lean path, side by side in one process: fal status reads, fal polls of a finished request
(status + result), and output downloads through the SSRF guard.

    python -m bench.hosted_calls [--calls 1000] [--rounds 5] [--concurrency 10]
                                 [--loop uvloop|asyncio]

The fal emulator runs in its own process (``python -m tests.emulators fal``), so the figures
are this process's CPU (``time.process_time``) per 1,000 calls, 10 at a time: the client
code, httpx/httpcore, and the kernel's loopback work done on this process's behalf. The
variants take turns, ``--rounds`` times; the lowest figure of each is kept (anything else
on the machine only ever adds time).

- ``fal-client``: what the provider did before: fal-client's request handle (two httpx
  clients per call, ``logs=1``), its status then one GET of the result.
- ``one httpx client``: a plain ``httpx.AsyncClient``, ``logs=0``.
- ``provider (lean)``: ``FalProvider.poll``: one client on gateway/lean_client.py.
- downloads: ``fetch_guarded`` building a client per file (before), and a shared
  ``GuardedFetcher`` (after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import fal_client.client as fal
import httpx

from gateway import fetch
from gateway.netguard import AllowList
from providers.base import ProviderRef, RouteSpec, StateKind
from providers.fal import FalProvider

LOOPBACK = AllowList.parse("127.0.0.1")
ROUTE = RouteSpec("fal", "fal-ai/flux/dev")
CONCURRENCY = 10  # --concurrency

Call = Callable[[int], Awaitable[Any]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def emulator(latency: float) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.emulators", "fal", "--port", str(port)]
    process = subprocess.Popen([*command, "--latency", str(latency)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base}/_emulator/behaviour", timeout=1)
                break
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(10)


async def cpu_ms(call: Call, calls: int) -> float:
    """Milliseconds of this process's CPU per 1,000 calls, ``CONCURRENCY`` at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with gate:
            await call(n)

    started = time.process_time()
    await asyncio.gather(*(one(n) for n in range(calls)))
    return 1000 * (time.process_time() - started) * 1000 / calls


async def compare(variants: dict[str, Call], calls: int, rounds: int) -> dict[str, float]:
    for call in variants.values():  # warm-up: connections, imports, caches
        await cpu_ms(call, min(calls, 50))
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, call in variants.items():
            best[name] = min(best[name], await cpu_ms(call, calls))
    return best


def sdk_handle(sdk_http: httpx.AsyncClient, ref: ProviderRef) -> fal.AsyncRequestHandle:
    return fal.AsyncRequestHandle(
        request_id=ref.request_id,
        response_url=ref.data["response_url"],
        status_url=ref.data["status_url"],
        cancel_url=ref.data["cancel_url"],
        client=sdk_http,
    )


async def measure_status(base: str, calls: int, rounds: int, finished: bool) -> dict[str, float]:
    provider = FalProvider(key="bench", queue_url=base)
    refs = [
        await provider.submit(ROUTE, {"prompt": "x"}, job_id=f"job-{n}", kind="image")
        for n in range(CONCURRENCY)
    ]
    want = StateKind.SUCCEEDED if finished else StateKind.RUNNING
    await asyncio.sleep(0.5 if finished else 0)
    sdk = fal.AsyncClient(key="bench")
    sdk_http = await sdk._client
    plain = httpx.AsyncClient(headers={"Authorization": "Key bench"})

    async def via_sdk(n: int) -> None:
        handle = sdk_handle(sdk_http, refs[n % len(refs)])
        status = await handle.status(with_logs=True)
        if isinstance(status, fal.Completed):
            (await sdk_http.get(handle.response_url)).json()

    async def via_plain(n: int) -> None:
        ref = refs[n % len(refs)]
        response = await plain.get(ref.data["status_url"], params={"logs": "0"})
        if response.json()["status"] == "COMPLETED":
            (await plain.get(ref.data["response_url"])).json()

    async def via_provider(n: int) -> None:
        state = await provider.poll(ROUTE, refs[n % len(refs)])
        assert state.kind is want, state

    variants = {
        "fal-client": via_sdk,
        "one httpx client": via_plain,
        "provider (lean)": via_provider,
    }
    try:
        return await compare(variants, calls, rounds)
    finally:
        await provider.aclose()
        await sdk_http.aclose()
        await plain.aclose()


async def measure_downloads(base: str, calls: int, rounds: int) -> dict[str, float]:
    provider = FalProvider(key="bench", queue_url=base)
    ref = await provider.submit(ROUTE, {"prompt": "x"}, job_id="job-file", kind="image")
    await asyncio.sleep(0.5)
    state = await provider.poll(ROUTE, ref)
    await provider.aclose()
    url = str(state.outputs[0].url)
    options: dict[str, Any] = {"allow": LOOPBACK, "max_bytes": 10**7, "timeout": 10.0}
    shared = fetch.GuardedFetcher()

    async def per_file(n: int) -> None:
        assert (await fetch.fetch_guarded(url, **options))[0]

    async def with_shared(n: int) -> None:
        assert (await fetch.fetch_guarded(url, fetcher=shared, **options))[0]

    try:
        variants = {"a client per file": per_file, "one GuardedFetcher": with_shared}
        return await compare(variants, calls, rounds)
    finally:
        await shared.aclose()


async def run(calls: int, rounds: int) -> None:
    with emulator(latency=3600) as slow:
        running = await measure_status(slow, calls, rounds, finished=False)
    with emulator(latency=0.05) as fast:
        done = await measure_status(fast, calls, rounds, finished=True)
        files = await measure_downloads(fast, calls, rounds)
    print(f"ms of CPU per 1,000 calls ({CONCURRENCY} at a time), best of {rounds} rounds")
    for title, figures in (
        ("status of a running request", running),
        ("poll of a finished request (status + result)", done),
        ("download of an output (guarded)", files),
    ):
        print(title)
        for name, ms in figures.items():
            print(f"  {name:24} {ms:8.1f}")


def main() -> None:
    global CONCURRENCY
    parser = argparse.ArgumentParser(prog="python -m bench.hosted_calls", description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="calls at once")
    args = parser.parse_args()
    CONCURRENCY = args.concurrency
    if args.loop == "uvloop":  # what the gateway runs on (uvicorn's loop="auto")
        import uvloop

        uvloop.run(run(args.calls, args.rounds))
    else:
        asyncio.run(run(args.calls, args.rounds))


if __name__ == "__main__":
    main()
