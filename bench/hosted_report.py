"""Target 8's figures as markdown: one table, a column per cell (store and mode), a row per
figure of issue #16, each a measured value and whether its target is met."""

from __future__ import annotations

import math
from collections.abc import Callable

from bench.hosted import LAG_OVER_S, CellRun
from bench.stats import ms, percentile

CPU_LIMIT_MS = {"webhooks": 2.0, "polling": 4.0}
RSS_LIMIT_MB, LAG_LIMIT_MS, GET_LIMIT_MS = 300, 50, 50
P50_LIMIT_MS, P99_LIMIT_MS = 5.0, 50.0

Row = Callable[[CellRun], tuple[str, bool | None]]


def _says(value: str, met: bool | None) -> str:
    if met is None:
        return value
    return f"{value}: {'**met**' if met else '**not met**'}"


def _cpu(r: CellRun) -> tuple[str, bool]:
    volume, paced = r.cpu_ms()
    limit = CPU_LIMIT_MS[r.cell.mode]
    worst = max(volume, paced)
    return (
        f"**{worst:.1f} ms** (volume {volume:.1f}, paced {paced:.1f}; ≤ {limit:g})",
        worst <= limit,
    )


def _in_flight(r: CellRun) -> tuple[str, bool]:
    v = r.volume
    return (
        f"**{v.peak_gateway:,}** at the gateway, {v.peak_provider:,} at the provider",
        v.peak_gateway >= r.sizes.jobs,
    )


def _completed(r: CellRun) -> tuple[str, bool]:
    v = r.volume
    done = v.completed == r.sizes.jobs and not v.failures and v.finished
    how = (
        f"in {v.total_seconds:.0f} s"
        if v.finished
        else f"**unfinished at {v.total_seconds:.0f} s**"
    )
    return f"**{v.completed:,}** {how}", done


def _rss(r: CellRun) -> tuple[str, bool]:
    peak = max(r.rss_mb, default=math.nan)
    return f"**{peak:,.0f} MB**", peak < RSS_LIMIT_MB


def _lag(r: CellRun) -> tuple[str, bool]:
    p99 = r.lag_p99_s * 1000
    if math.isnan(p99):
        return "n/a (no samples)", False
    bound = "∞" if math.isinf(p99) else f"{p99:g}"
    return (
        f"**≤ {bound} ms** (mean {r.lag_mean_s * 1000:.1f} ms, {r.lag_samples:,} samples, "
        f"{r.lag_over:,} over {LAG_OVER_S * 1000:g} ms)",
        p99 <= LAG_LIMIT_MS,
    )


def _get(r: CellRun) -> tuple[str, bool]:
    p99 = percentile(r.volume.get_ms, 99)
    return f"**{ms(p99)}** ({len(r.volume.get_ms):,} GETs)", p99 < GET_LIMIT_MS


def _samples(r: CellRun) -> list[float]:
    return r.paced.total_ms + [math.inf] * r.paced.missing


def _p50(r: CellRun) -> tuple[str, bool]:
    p50 = percentile(_samples(r), 50)
    return f"**{ms(p50)}**", p50 < P50_LIMIT_MS


def _p99(r: CellRun) -> tuple[str, bool]:
    p99 = percentile(_samples(r), 99)
    missing = f" ({r.paced.missing:,} never arrived)" if r.paced.missing else ""
    return f"**{ms(p99)}**{missing}", p99 < P99_LIMIT_MS


def _submits(r: CellRun) -> tuple[str, None]:
    v = r.volume
    sent = len(v.ids) + len(v.failures)
    rate = sent / v.submit_seconds if v.submit_seconds else 0.0
    p = r.paced
    achieved = len(p.sent) / p.send_span if p.send_span else 0.0
    return f"volume {rate:,.0f}/s; paced {achieved:,.0f}/s achieved", None


def _polls(r: CellRun) -> tuple[str, None]:
    v = r.volume
    per = sum(v.polls.values()) / v.accepted if v.accepted else math.nan
    results = v.results / v.accepted if v.accepted else math.nan
    trunc = " (log overflowed: at least)" if v.log_truncated else ""
    return f"{per:.2f} status + {results:.2f} result GETs{trunc}", None


def _deliveries(r: CellRun) -> tuple[str, None]:
    if not r.cell.webhooks:
        return "off", None
    split = " + ".join(f"{n:,.0f}" for n in r.deliveries)
    return f"{split} verified, {r.rejected:,.0f} rejected", None


def _cpu_seconds(r: CellRun) -> tuple[str, None]:
    return f"volume {r.volume_cpu:.1f} s, paced {r.paced_cpu:.1f} s", None


def rows(jobs: int, latency: float, rate: float, seconds: float) -> list[tuple[str, Row]]:
    return [
        ("Gateway CPU per hosted job (≤ 2 ms webhooks, ≤ 4 ms polling)", _cpu),
        (f"All {jobs:,} jobs of {latency:g} s in flight at once", _in_flight),
        (f"All {jobs:,} COMPLETED", _completed),
        (f"Gateway RSS peak < {RSS_LIMIT_MB} MB (worse replica)", _rss),
        (f"Event-loop lag p99 < {LAG_LIMIT_MS} ms (exported metric, worse replica)", _lag),
        (f"`GET /v1/jobs/{{id}}` p99 < {GET_LIMIT_MS} ms during the run", _get),
        (f"Submit → provider p50 < {P50_LIMIT_MS:g} ms ({rate:g}/s for {seconds:g} s)", _p50),
        (f"Submit → provider p99 < {P99_LIMIT_MS:g} ms", _p99),
        ("Submit rate", _submits),
        ("Provider calls per job (volume run)", _polls),
        ("Webhook deliveries (per replica)", _deliveries),
        ("Gateway CPU time (replicas summed)", _cpu_seconds),
    ]


def hosted_lines(runs: list[CellRun]) -> list[str]:
    if not runs:
        return ["8. Hosted path at volume (issue #16): not run (`--only`)."]
    s = runs[0].sizes
    met = sum(1 for r in runs for _, row in rows(s.jobs, s.latency, s.rate, s.seconds) if row(r)[1])
    judged = sum(
        1
        for r in runs
        for _, row in rows(s.jobs, s.latency, s.rate, s.seconds)
        if row(r)[1] is not None
    )
    out = [
        f"8. Hosted path at volume (issue #16), provider webhooks and polling only side by "
        f"side: {met} of {judged} figures met. Volume run: {s.jobs:,} jobs of {s.latency:g} s "
        f"submitted on {s.concurrency} connections (at most {s.limit:g} s); paced run: "
        f"{s.rate:g} submits/s for {s.seconds:g} s. Gateway CPU from `/proc/PID/stat` over "
        "each run / jobs COMPLETED; the emulator, load generator and probe run in processes "
        "of their own. On a shared machine (see Machine): CPU figures are what this run paid.",
        "",
        "   | Figure | " + " | ".join(r.cell.label for r in runs) + " |",
        "   |---|" + "---|" * len(runs),
    ]
    for title, row in rows(s.jobs, s.latency, s.rate, s.seconds):
        cells = [_says(*row(r)) for r in runs]
        out.append(f"   | {title} | " + " | ".join(cells) + " |")
    out.append("")
    for r in runs:
        notes = []
        if r.volume.failures:
            notes.append(
                f"{len(r.volume.failures):,} volume submits failed "
                f"(first: `{r.volume.failures[0][:120]}`)"
            )
        if r.paced.failures:
            notes.append(f"{len(r.paced.failures):,} paced submits failed")
        if r.volume.probe_errors:
            notes.append(f"{r.volume.probe_errors:,} probe requests failed")
        other = {k: n for k, n in r.volume.counts.items() if k != "COMPLETED"}
        if other:
            notes.append(f"volume run's other statuses {other}")
        if notes:
            out.append(f"   - {r.cell.label}: " + "; ".join(notes) + ".")
    return out
