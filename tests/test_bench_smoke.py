"""The benchmark harness must not rot: ``python -m bench --smoke --only PART`` runs each part
in seconds and writes its figures. This asserts that the harness works, not any speed."""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.emulator import JOB_HEADER, submits_by_job
from bench.hosted import LAG_OVER_S, CellRun, Sizes, lag_of
from bench.hosted_rig import LAG, Cell, bucket_percentile, counter, delta
from bench.latency import Latency
from bench.postgres import reachable
from bench.run import DEFAULT_PG
from bench.scale import Scale
from bench.stats import peak_overlap, percentile
from bench.wrk import WrkResult, combine, parse_wrk

ROOT = Path(__file__).resolve().parent.parent

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1/v1/jobs/images
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms    1.00ms  20.00ms   90.00%
  Latency Distribution
     50%    2.10ms
     75%    2.90ms
     90%    3.50ms
     99%    1.20s
  3000 requests in 1.00s, 1.20MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2990.50
Transfer/sec:      1.20MB
"""


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.rps == 2990.5
    assert result.requests == 3000
    assert result.p50_ms == pytest.approx(2.1)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.bad == 6


def test_two_servers_loads_add_up_and_take_the_worse_percentiles() -> None:
    both = combine([WrkResult(100.0, 1.0, 9.0, 500, 0), WrkResult(50.0, 2.0, 4.0, 250, 1)])
    assert (both.rps, both.p50_ms, both.p99_ms, both.requests, both.bad) == (150, 2, 9, 750, 1)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7


def test_peak_overlap_counts_runs_at_the_provider_at_once() -> None:
    assert peak_overlap([0.0, 1.0, 2.0, 10.0], 5.0) == 3
    assert peak_overlap([0.0, 5.0, 10.0], 5.0) == 1  # one ends as the next starts
    assert peak_overlap([], 5.0) == 0


def test_submits_are_matched_to_jobs_by_the_header_fal_submits_carry() -> None:
    entries = [
        {"route": "submit", "status": 200, "time": 1.0, "headers": {JOB_HEADER: "job-a"}},
        {"route": "submit", "status": 500, "time": 2.0, "headers": {JOB_HEADER: "job-b"}},
        {"route": "status", "status": 202, "time": 3.0, "headers": {JOB_HEADER: "job-a"}},
    ]
    assert {k: v["time"] for k, v in submits_by_job(entries).items()} == {"job-a": 1.0}


def _need_wrk() -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed; CI must install it (apt-get install -y wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")


def _smoke(tmp_path: Path, parts: str, *extra: str) -> tuple[str, str]:
    """The figures of the RESULTS.md the smoke run of ``parts`` wrote, and its stderr."""
    out = tmp_path / "RESULTS.md"
    cmd = [sys.executable, "-m", "bench", "--smoke", "--no-install", "--only", parts]
    proc = subprocess.run(
        [*cmd, "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert "## Machine" in text and "CPUs (nproc)" in text and "## Setup" in text
    figures = text.split("## Figures", 1)[1].split("## Profiles", 1)[0]
    return figures, proc.stderr


def _line(text: str, start: str) -> str:
    return next(x for x in text.splitlines() if x.lstrip().startswith(start))


@pytest.mark.timeout(180)
def test_bench_smoke_run_writes_figures(tmp_path: Path) -> None:
    _need_wrk()
    text, _ = _smoke(tmp_path, "http,e2e")
    for name in ("POST /v1/jobs/images", "GET /v1/jobs/{id}"):
        line = next(x for x in text.splitlines() if name in x)
        assert re.search(r"ratio \*\*\d+\.\d\dx\*\*", line), line
        assert "**met**" in line or "**not met**" in line
    assert re.search(r"\*\*[\d,]+ jobs/s\*\*", text), text


@pytest.mark.timeout(180)
def test_bench_smoke_scale_reports_memory_lag_get_latency_and_polls(tmp_path: Path) -> None:
    text, _ = _smoke(tmp_path, "scale")
    assert _line(text, "4. Scale:")
    assert "**met**" in _line(text, "- All complete:"), text
    for start in ("- Gateway RSS peak", "- Event-loop lag p99", "- `GET /v1/jobs/{id}` p99"):
        line = _line(text, start)
        assert re.search(r"\*\*[\d,.]+ (MB|ms)\*\*", line), line
        assert "**met**" in line or "**not met**" in line
    polls = _line(text, "- Provider status polls per job")
    assert re.search(r"\*\*\d+\.\d\*\*", polls), polls
    assert "over the 50 provider requests whose result was read (of 50 submits" in polls, polls


@pytest.mark.timeout(180)
def test_bench_smoke_latency_matches_every_submit_to_the_provider(tmp_path: Path) -> None:
    text, _ = _smoke(tmp_path, "latency")
    line = _line(text, "5. Submit → provider-submit latency")
    assert re.search(r"p50 \*\*[\d,.]+ ms\*\*, p99 \*\*[\d,.]+ ms\*\*", line), line
    assert "had not reached the provider" not in line, line
    assert "**met**" in line or "**not met**" in line
    assert "scheduler (`created_at` → attempt opened) p50" in text


@pytest.mark.timeout(180)
def test_bench_smoke_postgres_one_and_two_replicas(tmp_path: Path) -> None:
    _need_wrk()
    why = reachable(DEFAULT_PG)
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no PostgreSQL at {DEFAULT_PG}: {why}")
        pytest.skip(f"no PostgreSQL at {DEFAULT_PG}: {why}")
    text, log = _smoke(tmp_path, "postgres")
    assert _line(text, "6. PostgreSQL as the store")
    assert _line(text, "- 1 replica:") and _line(text, "- 2 replicas:")
    ratios = re.findall(r"ratio \*\*\d+\.\d\dx\*\*", text)
    assert len(ratios) == 4, text
    assert len(re.findall(r"\*\*[\d,]+ jobs/s\*\*", text)) == 2, text
    scaling = _line(text, "- Scaling factor")
    assert len(re.findall(r"\*\*\d+\.\d\dx\*\*", scaling)) == 3, scaling
    created = set(re.findall(r"backserv_bench_[0-9a-f]{12}", log))
    assert len(created) == 4, log  # one per part: wrk and end to end, on 1 and 2 replicas
    assert not asyncio.run(_existing(created)), "a benchmark database was not dropped"


async def _existing(names: set[str]) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(DEFAULT_PG, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", list(names)
        )
    finally:
        await conn.close()
    return [str(r[0]) for r in rows]


@pytest.mark.timeout(180)
def test_bench_smoke_fairness_reports_the_flooded_to_quiet_ratio(tmp_path: Path) -> None:
    text, _ = _smoke(tmp_path, "fairness")
    line = _line(text, "7. Fairness under default limits")
    assert re.search(r"\*\*\d+\.\d\dx\*\*, target ≤ 2x", line), line
    assert "**met**" in line or "**not met**" in line
    assert re.search(r"[1-9]\d*% of them 429", line), line  # the flood did meet the limit


def test_lag_histogram_percentile_is_the_bound_of_its_bucket() -> None:
    before = {0.001: 10.0, 0.05: 10.0, 0.1: 10.0, math.inf: 10.0}
    after = {0.001: 108.0, 0.05: 209.0, 0.1: 210.0, math.inf: 210.0}
    run = delta(before, after)  # 98 under 1 ms, 101 up to 50 ms, 1 up to 100 ms
    assert bucket_percentile(run, 50) == 0.05
    assert bucket_percentile(run, 99) == 0.05
    assert bucket_percentile(run, 100) == 0.1
    assert math.isnan(bucket_percentile(delta(after, after), 99))


def _lag_scrape(counts: dict[str, int], total_s: float) -> str:
    lines = [f"# TYPE {LAG} histogram"]
    lines += [f'{LAG}_bucket{{le="{le}"}} {n}' for le, n in counts.items()]
    return "\n".join([*lines, f"{LAG}_count {counts['+Inf']}", f"{LAG}_sum {total_s}", ""])


def test_lag_figures_count_the_samples_over_the_limit_on_every_replica() -> None:
    assert LAG_OVER_S == 0.05
    quiet = {"0.01": 0, "0.05": 0, "0.1": 0, "+Inf": 0}
    first = {"0.01": 90, "0.05": 97, "0.1": 99, "+Inf": 100}  # 3 over 50 ms
    second = {"0.01": 50, "0.05": 50, "0.1": 50, "+Inf": 50}  # none over
    sizes = Sizes.scaled(0.01)
    run = CellRun(
        Cell("postgres", "webhooks"),
        sizes,
        Scale(sizes.jobs, sizes.latency),
        Latency(sizes.rate, sizes.seconds, sizes.latency, sizes.wait),
    )
    lag_of(
        run,
        [_lag_scrape(quiet, 0.0), _lag_scrape(quiet, 0.0)],
        [_lag_scrape(first, 2.0), _lag_scrape(second, 1.0)],
    )
    assert (run.lag_samples, run.lag_over) == (150, 3)
    assert run.lag_p99_s == 0.1  # the worse replica's
    assert run.lag_mean_s == pytest.approx(3.0 / 150)


def test_counters_are_summed_over_the_samples_whose_labels_match() -> None:
    text = (
        "# TYPE backserv_provider_webhooks counter\n"
        'backserv_provider_webhooks_total{provider="fal",outcome="verified"} 7.0\n'
        'backserv_provider_webhooks_total{provider="replicate",outcome="verified"} 2.0\n'
        'backserv_provider_webhooks_total{provider="fal",outcome="rejected"} 1.0\n'
    )
    assert counter(text, "backserv_provider_webhooks", outcome="verified") == 9
    assert counter(text, "backserv_provider_webhooks", provider="fal", outcome="rejected") == 1


def test_hosted_sizes_scale_the_issue_figures_down_but_not_the_rate() -> None:
    full, tenth = Sizes.scaled(1.0), Sizes.scaled(0.1)
    assert (full.jobs, full.rate, full.seconds) == (10_000, 500, 6)
    assert (tenth.jobs, tenth.rate, tenth.latency) == (1_000, 500, 5)
    assert Sizes.scaled(0.1, limit=30).limit == 30


@pytest.mark.timeout(180)
def test_bench_smoke_hosted_reports_issue_16_targets_for_both_modes(tmp_path: Path) -> None:
    stores = "sqlite" if reachable(DEFAULT_PG) is not None else "sqlite,postgres"
    text, _ = _smoke(tmp_path, "hosted", "--hosted-stores", stores)
    header = _line(text, "| Figure |")
    columns = header.count("|") - 2
    assert columns == 2 * len(stores.split(",")), header
    assert "webhooks" in header and "polling" in header
    for start in (
        "| Gateway CPU per hosted job",
        "| All 40 jobs of 0.5 s in flight",
        "| All 40 COMPLETED",
        "| Gateway RSS peak",
        "| Event-loop lag p99",
        "| `GET /v1/jobs/{id}` p99",
        "| Submit → provider p50",
        "| Submit → provider p99",
    ):
        row = _line(text, start)
        verdicts = re.findall(r"\*\*(?:not )?met\*\*", row)
        assert len(verdicts) == columns, row
    assert re.findall(r"\*\*[\d.]+ ms\*\* \(volume [\d.]+, paced", _line(text, "| Gateway CPU"))
    assert _line(text, "| All 40 COMPLETED").count("**met**") == columns, text
    deliveries = _line(text, "| Webhook deliveries").split("|")[2:-1]
    for label, cell in zip(header.split("|")[2:-1], deliveries, strict=True):
        if "webhooks" in label:  # every job's delivery was verified (by one replica or other)
            assert sum(int(n) for n in re.findall(r"(\d+)", cell.split("verified")[0])) == 40
        else:
            assert cell.strip() == "off"
