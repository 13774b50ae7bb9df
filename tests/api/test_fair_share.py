"""Fair shares (gateway/api/fair_share.py): a key's requests past its share wait their turn;
other keys, anonymous requests and long waits do not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.api.fair_share import FairShare


class Held:
    """An ASGI app whose requests run until the test releases them, one by one."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        name = scope["name"]
        self.started.append(name)
        self.gates.setdefault(name, asyncio.Event())
        await self.gates[name].wait()

    def release(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()


def scope(name: str, key: bytes | None, path: str = "/v1/jobs/x", query: bytes = b"") -> Any:
    headers = [] if key is None else [(b"authorization", key)]
    return {
        "type": "http",
        "name": name,
        "path": path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1),
    }


async def nothing() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def send(message: Any) -> None:
    pass


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_keys_third_request_waits_while_another_key_runs_at_once() -> None:
    app = Held()
    fair = FairShare(app, per_caller=2)
    tasks = [
        asyncio.create_task(fair(scope(f"a{i}", b"Bearer A"), nothing, send)) for i in range(3)
    ]
    await settle()
    assert app.started == ["a0", "a1"]
    other = asyncio.create_task(fair(scope("b0", b"Bearer B"), nothing, send))
    await settle()
    assert app.started == ["a0", "a1", "b0"]  # B did not queue behind A
    app.release("a0")
    await settle()
    assert app.started == ["a0", "a1", "b0", "a2"]  # A's turn came when one of its own ended
    for name in ("a1", "a2", "b0"):
        app.release(name)
    await asyncio.gather(*tasks, other)
    assert fair.running == {} and fair.waiting == {}


@pytest.mark.parametrize(
    ("key", "path", "query"),
    [
        (None, "/files/job-1/0.png", b"sig=x"),  # anonymous: the proxy's job
        (b"Bearer A", "/v1/jobs/x", b"wait=30"),  # long-poll
        (b"Bearer A", "/v1/jobs/x/events", b""),  # event stream
        (b"Bearer A", "/v1/images/generations", b""),  # synchronous wait
    ],
)
async def test_waits_and_anonymous_requests_hold_no_share(
    key: bytes | None, path: str, query: bytes
) -> None:
    app = Held()
    fair = FairShare(app, per_caller=1)
    tasks = [
        asyncio.create_task(fair(scope(f"r{i}", key, path, query), nothing, send)) for i in range(3)
    ]
    await settle()
    assert app.started == ["r0", "r1", "r2"]
    for i in range(3):
        app.release(f"r{i}")
    await asyncio.gather(*tasks)


async def test_a_waiting_request_cancelled_gives_up_its_place_without_leaking() -> None:
    app = Held()
    fair = FairShare(app, per_caller=1)
    first = asyncio.create_task(fair(scope("a0", b"Bearer A"), nothing, send))
    queued = asyncio.create_task(fair(scope("a1", b"Bearer A"), nothing, send))
    third = asyncio.create_task(fair(scope("a2", b"Bearer A"), nothing, send))
    await settle()
    queued.cancel()  # the client went away while waiting
    await settle()
    app.release("a0")
    await settle()
    assert app.started == ["a0", "a2"]
    app.release("a2")
    await asyncio.gather(first, third)
    assert queued.cancelled()
    assert fair.running == {} and fair.waiting == {}


async def test_a_failing_request_hands_its_share_on() -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    fair = FairShare(boom, per_caller=1)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await fair(scope("x", b"Bearer A"), nothing, send)
    assert fair.running == {} and fair.waiting == {}
