"""The rig of target 8 (issue #16): the fal emulator in its own process, and either one gateway
on SQLite or two replicas on one PostgreSQL database pointed at it, with provider webhooks on
or off; and what the harness reads from the gateways' ``/metrics``.

With webhooks on, each gateway is started with ``BACKSERV_PROVIDER_WEBHOOKS=true`` and the
emulator's own key set as ``BACKSERV_FAL_WEBHOOK_JWKS_URL``; its ``BACKSERV_PUBLIC_URL`` (the
``fal_webhook`` it hands fal) is itself with one gateway, and **the other replica** with two:
a job may be claimed by either replica, so its delivery reaches either the replica holding
its lease or the one that does not (which must relay it through the store).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.emulator import Emulator, fal_emulator, fal_env
from bench.postgres import fresh_database
from bench.servers import stop
from tests.emulators.fal_webhooks import JWKS_PATH
from tests.server import Server, free_port, start_server

STORES = ("sqlite", "postgres")
MODES = ("webhooks", "polling")
LAG = "backserv_event_loop_lag_seconds"
DELIVERIES = "backserv_provider_webhooks"


@dataclass(frozen=True)
class Cell:
    """One column of target 8's table: a store (and so a replica count) and a mode."""

    store: str
    mode: str

    @property
    def replicas(self) -> int:
        return 1 if self.store == "sqlite" else 2

    @property
    def webhooks(self) -> bool:
        return self.mode == "webhooks"

    @property
    def label(self) -> str:
        store = "SQLite, 1 gateway" if self.store == "sqlite" else "PostgreSQL, 2 replicas"
        return f"{store}, {self.mode}"


@dataclass
class Rig:
    emulator: Emulator
    gateways: list[Server]
    database_url: str

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.gateways]

    @property
    def pids(self) -> list[int]:
        return [g.pid for g in self.gateways]


@contextlib.contextmanager
def _replicas(
    workdir: Path, env: dict[str, str], count: int, cross: bool
) -> Iterator[list[Server]]:
    """``count`` gateways; with ``cross``, each one's public URL is the next one's."""
    ports = [free_port() for _ in range(count)]
    servers: list[Server] = []
    try:
        for i, port in enumerate(ports):
            sub = workdir if count == 1 else workdir / f"replica-{i}"
            sub.mkdir(parents=True, exist_ok=True)
            public = f"http://127.0.0.1:{ports[(i + 1) % count] if cross else port}"
            servers.append(start_server(sub, {**env, "BACKSERV_PUBLIC_URL": public}, port=port))
        yield servers
    finally:
        for server in servers:
            stop(server)


@contextlib.contextmanager
def hosted_rig(
    workdir: Path, cell: Cell, latency: float, lane_limit: int, admin_url: str
) -> Iterator[Rig]:
    """The emulator (``latency`` seconds a run) and the cell's gateways, all stopped (and a
    PostgreSQL database dropped) afterwards. ``workdir`` is emptied first: a SQLite database
    left by an earlier run in it would count that run's jobs as this one's."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    with fal_emulator(workdir, latency) as emulator:
        env = fal_env(workdir, emulator, lane_limit)
        if cell.webhooks:
            env["BACKSERV_PROVIDER_WEBHOOKS"] = "true"
            env["BACKSERV_FAL_WEBHOOK_JWKS_URL"] = emulator.url + JWKS_PATH
        if cell.store == "sqlite":
            with _replicas(workdir, env, 1, cross=False) as servers:
                yield Rig(emulator, servers, f"sqlite:///{workdir / 'backserv.db'}")
            return
        with fresh_database(admin_url) as url:
            env["BACKSERV_DATABASE_URL"] = url
            env["BACKSERV_SECRET_KEY"] = secrets.token_hex(32)  # replicas share it, and files
            env["BACKSERV_STORAGE_DIR"] = str(workdir / "shared-files")
            with _replicas(workdir, env, cell.replicas, cross=cell.webhooks) as servers:
                yield Rig(emulator, servers, url)


# -- /metrics ------------------------------------------------------------------------------


def scrape(url: str) -> str:
    resp = httpx.get(f"{url}/metrics", timeout=60)
    resp.raise_for_status()
    return resp.text


def histogram(text: str, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts, by upper bound (``+Inf`` included)."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


def counter(text: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_total" and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def delta(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    return {le: n - before.get(le, 0.0) for le, n in after.items()}


def bucket_percentile(buckets: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the ``q``-th percentile (seconds; NaN without
    observations, ``inf`` past the last finite bucket)."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return float("nan")
    for le, n in ordered:
        if n >= q / 100 * total:
            return le
    return float("inf")
