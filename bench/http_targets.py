"""Targets 1 and 2: submit and poll throughput of the gateway against the bare app under wrk.

The gateway and the bare app are loaded alternately (gateway, bare, gateway, bare, ...) with
the same wrk settings; each figure is the ratio gateway/bare, the median of the rounds with
min and max. With several replicas, as many bare apps are started and each side's load is
split the same way (one wrk per server), so the ratio still compares like with like.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.profiles import profile
from bench.servers import AUTH, JOB, BenchError, bare_apps, gateways, say
from bench.wrk import Load, WrkResult, lua_post_script

POST_PATH = "/v1/jobs/images"


@dataclass
class Figure:
    name: str
    target: str
    ratios: list[float] = field(default_factory=list)
    a: list[WrkResult] = field(default_factory=list)  # the gateway, per round
    b: list[WrkResult] = field(default_factory=list)  # the bare app, per round
    threshold: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def met(self) -> bool:
        return self.median >= self.threshold

    @property
    def rps(self) -> float:
        """The gateway's median throughput."""
        return statistics.median(r.rps for r in self.a)

    def summary(self) -> str:
        b = statistics.median(r.rps for r in self.b)
        p99a = statistics.median(r.p99_ms for r in self.a)
        p99b = statistics.median(r.p99_ms for r in self.b)
        return (
            f"ratio **{self.median:.2f}x** (min {min(self.ratios):.2f}, max "
            f"{max(self.ratios):.2f}, {len(self.ratios)} rounds); median req/s gateway "
            f"{self.rps:,.0f} vs bare {b:,.0f}; p99 {p99a:.1f} ms vs {p99b:.1f} ms"
        )

    def line(self, label: str) -> str:
        verdict = "**met**" if self.met else "**not met**"
        return f"{label}`{self.name}` throughput {self.target}: {verdict}. {self.summary()}."


def alternate(
    fig: Figure, rounds: int, a: Callable[[], WrkResult], b: Callable[[], WrkResult]
) -> Figure:
    for i in range(rounds):
        ra, rb = a(), b()
        fig.a.append(ra)
        fig.b.append(rb)
        fig.ratios.append(ra.rps / rb.rps)
        say(
            f"  {fig.name} round {i + 1}/{rounds}: gateway {ra.rps:,.0f} req/s, "
            f"bare {rb.rps:,.0f} req/s, ratio {fig.ratios[-1]:.2f}"
        )
    return fig


def warm_up(load: Load, gws: list[str], bares: list[str], path_get: str, script: Path) -> None:
    """One second of each load on each side, not counted: connection pools, caches and the
    code paths are warm before the first round (the first one was visibly colder)."""
    short = dataclasses.replace(load, duration=1.0)
    for urls in (gws, bares):
        short.run_many([u + POST_PATH for u in urls], script)
        short.run_many([u + path_get for u in urls])


def bench_http(
    workdir: Path,
    load: Load,
    rounds: int,
    env: dict[str, str],
    *,
    replicas: int = 1,
    profiles: list[str] | None = None,
) -> list[Figure]:
    """Targets 1 and 2. ``env`` must hold the scheduler still (sandbox concurrency 0), so
    submitted jobs stay QUEUED: the figure is the submit path alone (auth, validation,
    durable insert). The GET reads one pre-created job (through every replica)."""
    with gateways(workdir, env, replicas) as gws:
        first = httpx.post(f"{gws[0].url}{POST_PATH}", json=JOB, headers=AUTH, timeout=10)
        if first.status_code != 202:
            raise BenchError(f"submit answered {first.status_code}: {first.text}")
        job_id = first.json()["id"]
        path_get = f"/v1/jobs/{job_id}"
        got = b""
        for gw in gws:
            resp = httpx.get(f"{gw.url}{path_get}", headers=AUTH, timeout=10)
            if resp.status_code != 200:
                raise BenchError(f"GET answered {resp.status_code}: {resp.text}")
            got = resp.content
        script = lua_post_script(workdir / "post.lua", JOB)
        with bare_apps(workdir, replicas, len(first.content), len(got)) as bares:
            warm_up(load, [g.url for g in gws], [b.url for b in bares], path_get, script)
            post = alternate(
                Figure("POST /v1/jobs/images", "≥ 0.8x the bare app", threshold=0.8),
                rounds,
                lambda: load.run_many([g.url + POST_PATH for g in gws], script),
                lambda: load.run_many([b.url + POST_PATH for b in bares], script),
            )
            get = alternate(
                Figure("GET /v1/jobs/{id}", "≥ 0.9x the bare app", threshold=0.9),
                rounds,
                lambda: load.run_many([g.url + path_get for g in gws]),
                lambda: load.run_many([b.url + path_get for b in bares]),
            )
        if profiles is not None:
            say("profiling the submit and poll paths with py-spy")
            pid, url = gws[0].pid, gws[0].url
            profiles.append("- Submit path (`POST /v1/jobs/images` under wrk):")
            profiles += profile(pid, load, url + POST_PATH, script, workdir / "post.txt")
            profiles.append("- Poll path (`GET /v1/jobs/{id}` under wrk):")
            profiles += profile(pid, load, url + path_get, None, workdir / "get.txt")
    return [post, get]
