"""Typical latency per model (gateway/web/latency.py): medians, one cached read."""

from __future__ import annotations

import pytest

from gateway.web.latency import Latencies, Latency, summarise


def test_the_median_of_each_models_recent_latencies() -> None:
    got = summarise([("a", 1.0), ("b", 10.0), ("a", 3.0), ("a", 100.0), ("b", 20.0)])
    assert got == {"a": Latency(3.0, 3), "b": Latency(15.0, 2)}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.84, "0.8 s"), (12.4, "12 s"), (185, "3 min 5 s"), (120, "2 min")]
)
def test_latency_reads_plainly(seconds: float, text: str) -> None:
    assert Latency(seconds, 1).text == text


async def test_one_read_serves_every_page_until_it_expires() -> None:
    reads: list[int] = []
    now = [0.0]

    async def source(limit: int) -> list[tuple[str, float]]:
        reads.append(limit)
        return [("a", float(len(reads)))]

    latencies = Latencies(source, window=50, ttl=60, clock=lambda: now[0])
    assert (await latencies.by_model())["a"].p50 == 1.0
    now[0] = 59
    assert (await latencies.by_model())["a"].p50 == 1.0
    now[0] = 61
    assert (await latencies.by_model())["a"].p50 == 2.0
    assert reads == [50, 50]
