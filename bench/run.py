"""The benchmark harness (``python -m bench``, ``make bench``); writes bench/RESULTS.md.

The targets of issue #9, one module each:

1, 2. ``http_targets``: submit and poll throughput, the gateway against the bare app under wrk.
3. ``e2e``: jobs run to COMPLETED end to end, against Celery.
4. ``scale``: 10,000 jobs in flight against the fal emulator (RSS, loop lag, GET p99, polls).
5. ``latency``: submit -> provider-submit latency at a paced 500 submits/s.
6. ``postgres``: 1 to 3 again on PostgreSQL, with one replica and with two.
7. ``fairness``: another key's polls while one key floods at full speed (issue #14).
8. ``hosted``: issue #16's targets, provider webhooks and polling only side by side, on
   SQLite and on PostgreSQL with two replicas (``hosted``, ``hosted_report``). Its SQLite
   polling column measures what 4 and 5 do, so those two are left out unless ``--only``
   names them. ``--hosted-size`` scales it (1 = the issue's 10,000 jobs; 0.1 is a quick look).
9. ``objectstore``: end-to-end jobs/s with the files in a bucket against a directory (#17).

``--only`` runs some of them (``--only scale,latency``); ``--smoke`` shrinks every part to
seconds, for the test that keeps the harness from rotting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.e2e import bench_celery, bench_e2e
from bench.fairness import bench_fairness
from bench.hosted import Sizes, bench_cell
from bench.hosted_report import hosted_lines
from bench.hosted_rig import MODES, STORES, Cell
from bench.http_targets import bench_http
from bench.latency import bench_latency
from bench.object_store import bench_object_store
from bench.postgres import bench_pg_run, pg_lines, reachable
from bench.report import write_results
from bench.scale import bench_scale
from bench.servers import ROOT, gateway_env, say
from bench.wrk import Load, find_wrk

PARTS = ("http", "e2e", "scale", "latency", "postgres", "fairness", "hosted", "objectstore")
DEFAULT_PARTS = ("http", "e2e", "postgres", "fairness", "hosted", "objectstore")
DEFAULT_PG = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("BACKSERV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--smoke", action="store_true", help="seconds per part: tiny sizes, no profiles")
    add(
        "--only",
        default=",".join(DEFAULT_PARTS),
        help=f"comma-separated parts of {','.join(PARTS)}",
    )
    add("--rounds", type=int, default=3)
    add("--duration", type=float, default=5.0, help="seconds per wrk run")
    add("--connections", type=int, default=64)
    add("--threads", type=int, default=2)
    add("--jobs", type=int, default=20_000, help="target 3's job count (the issue's 20,000)")
    add("--e2e-concurrency", type=int, default=64)
    add("--no-e2e", action="store_true", help="the same as leaving e2e out of --only")
    add("--no-celery", action="store_true")
    add("--no-profile", action="store_true", help="skip the py-spy profiles")
    add("--scale-jobs", type=int, default=10_000)
    add("--scale-latency", type=float, default=5.0, help="seconds a run takes at the emulator")
    add("--scale-concurrency", type=int, default=64)
    add("--scale-limit", type=float, default=120.0, help="most seconds for target 4's run")
    add("--latency-rate", type=float, default=500.0, help="target 5's submits per second")
    add("--latency-seconds", type=float, default=6.0)
    add("--latency-run", type=float, default=5.0, help="seconds a run takes at the emulator")
    add("--latency-wait", type=float, default=30.0, help="most seconds to wait for a submit")
    add("--postgres-url", default=DEFAULT_PG, help="a server where databases may be created")
    add("--pg-rounds", type=int, default=2)
    add("--pg-duration", type=float, default=3.0)
    add("--pg-jobs", type=int, default=1_500)
    add("--flood-connections", type=int, default=8, help="target 7's flooding connections")
    add("--flood-pairs", type=int, default=21, help="target 7's quiet/flooded phase pairs")
    add("--objectstore-jobs", type=int, default=3_000, help="figure 9's jobs per backend")
    add("--hosted-size", type=float, default=1.0, help="target 8's size (1 = the issue's)")
    add("--hosted-stores", default=",".join(STORES), help="target 8's stores")
    add("--hosted-modes", default=",".join(MODES), help="target 8's modes")
    add("--hosted-limit", type=float, default=180.0, help="most seconds for a volume run")
    add("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    add("--no-install", action="store_true", help="never apt-get install wrk")
    add("--workdir", type=Path, help="keep the servers' logs and databases here (not deleted)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))} (known: {', '.join(PARTS)})")
    if args.no_e2e and "e2e" in args.parts:
        args.parts.remove("e2e")
    if args.smoke:
        args.rounds, args.duration, args.jobs = 1, 1.0, 50
        args.connections, args.e2e_concurrency = 8, 8
        args.no_celery = args.no_profile = True
        args.scale_jobs, args.scale_latency, args.scale_concurrency = 50, 0.5, 8
        args.scale_limit = 60.0
        args.latency_rate, args.latency_seconds, args.latency_run = 50.0, 1.0, 0.5
        args.latency_wait = 30.0
        args.pg_rounds, args.pg_duration, args.pg_jobs = 1, 1.0, 50
        args.flood_pairs = 2
        args.objectstore_jobs = 50
    args.hosted = Sizes.scaled(args.hosted_size, limit=args.hosted_limit)
    if args.smoke:
        args.hosted = Sizes(jobs=40, latency=0.5, concurrency=8, limit=60, rate=40, seconds=1)
        args.hosted.wait = 20.0
    return args


def run_parts(args: argparse.Namespace, load: Load, workdir: Path) -> tuple[list[str], list[str]]:
    """The figures and the profiles, as markdown lines."""
    figures: list[str] = []
    profiles: list[str] | None = None if args.no_profile else []
    if "http" in args.parts:
        say("targets 1 and 2: gateway vs bare app under wrk")
        hold = gateway_env(BACKSERV_PROVIDER_CONCURRENCY='{"sandbox": 0}')
        http = bench_http(workdir / "http", load, args.rounds, hold, profiles=profiles)
        figures += [fig.line(f"{n}. ") for n, fig in enumerate(http, 1)]
    else:
        figures.append("1, 2. Submit and poll throughput: not run (`--only`).")
    if "e2e" in args.parts:
        say(f"target 3: {args.jobs} jobs end to end")
        e2e_profile: list[str] | None = None if profiles is None else []
        e2e = bench_e2e(
            workdir / "e2e",
            gateway_env(),
            args.jobs,
            args.e2e_concurrency,
            600,
            profile=e2e_profile,
        )
        if profiles is not None and e2e_profile is not None:
            profiles.append("- Target 3's run (jobs to `sandbox-image-fast`), its first 10 s:")
            profiles += e2e_profile
        line = e2e.line("3. End to end, ", args.jobs)
        cel = "not run (`--no-celery`)" if args.no_celery else None
        if cel is None:
            say("target 3: celery")
            c = bench_celery(workdir, args.jobs, timeout=600)
            if isinstance(c, str):
                cel = c
            else:
                ratio = e2e.jobs_per_second / c.jobs_per_second
                verdict = "**met**" if ratio >= 3 else "**not met**"
                cel = (
                    f"{c.jobs_per_second:,.0f} tasks/s ({c.total_seconds:.1f} s; sends "
                    f"alone {c.submits_per_second:,.0f}/s). Gateway/Celery "
                    f"**{ratio:.2f}x**, target ≥ 3x: {verdict}"
                )
        figures.append(line + f" Celery: {cel}.")
    else:
        figures.append("3. End to end vs Celery: not run (`--only`).")
    if "scale" in args.parts:
        say(f"target 4: {args.scale_jobs} jobs in flight against the fal emulator")
        scale = bench_scale(
            workdir / "scale",
            args.scale_jobs,
            args.scale_latency,
            args.scale_concurrency,
            args.scale_limit,
            profile_seconds=0.0 if args.no_profile else 20.0,
        )
        figures += scale.lines()
        if profiles is not None:
            profiles.append(
                f"- Target 4's run (`bench-fal`, {args.scale_jobs:,} jobs against the fal "
                "emulator), the first 20 s from the first submit:"
            )
            profiles += scale.profile
    else:
        figures.append(
            "4. Scale: not run (`--only`; target 8's SQLite polling column measures it)."
        )
    if "latency" in args.parts:
        say(f"target 5: submit -> provider-submit latency at {args.latency_rate:g}/s")
        latency = bench_latency(
            workdir / "latency",
            args.latency_rate,
            args.latency_seconds,
            args.latency_run,
            timeout=args.latency_wait,
        )
        figures += latency.lines()
    else:
        figures.append("5. Submit → provider-submit latency: not run (`--only`; see target 8).")
    figures += run_postgres(args, load, workdir)
    if "fairness" in args.parts:
        say(f"target 7: a key flooding from {args.flood_connections} connections")
        fair = bench_fairness(workdir / "fairness", args.flood_connections, args.flood_pairs, 15)
        figures.append(fair.line())
    else:
        figures.append("7. Fairness: not run (`--only`).")
    figures += run_hosted(args, workdir, profiles)
    if "objectstore" in args.parts:
        say(f"figure 9: {args.objectstore_jobs} jobs with a directory, then with a bucket")
        jobs, concurrency = args.objectstore_jobs, args.e2e_concurrency
        figures.append(bench_object_store(workdir / "objectstore", jobs, concurrency, 600))
    return figures, profiles or ["Not taken (`--no-profile`)."]


def run_hosted(args: argparse.Namespace, workdir: Path, profiles: list[str] | None) -> list[str]:
    if "hosted" not in args.parts:
        return hosted_lines([])
    stores = [s for s in STORES if s in args.hosted_stores.split(",")]
    skipped = ""
    if "postgres" in stores and (why := reachable(args.postgres_url)) is not None:
        stores.remove("postgres")
        skipped = f"   - PostgreSQL columns not run: no server answers ({why[:200]})."
    runs = []
    for store in stores:
        for mode in (m for m in MODES if m in args.hosted_modes.split(",")):
            cell = Cell(store, mode)
            spy = 0.0 if profiles is None or store != "sqlite" else 20.0
            run = bench_cell(
                workdir / f"hosted-{store}-{mode}", cell, args.hosted, args.postgres_url, spy
            )
            runs.append(run)
            if profiles is not None and run.profile:
                profiles.append(
                    f"- Target 8's volume run, {cell.label} ({args.hosted.jobs:,} jobs), the "
                    "first 20 s from the first submit:"
                )
                profiles += run.profile
    return hosted_lines(runs) + ([skipped] if skipped else [])


def run_postgres(args: argparse.Namespace, load: Load, workdir: Path) -> list[str]:
    if "postgres" not in args.parts:
        return ["6. PostgreSQL and replicas: not run (`--only`)."]
    why = reachable(args.postgres_url)
    if why is not None:
        return [f"6. PostgreSQL and replicas: not run, no server answers ({why[:200]})."]
    pg_load = Load(load.wrk, load.threads, load.connections, args.pg_duration)
    runs = [
        bench_pg_run(
            workdir / f"pg-{n}",
            args.postgres_url,
            pg_load,
            args.pg_rounds,
            args.pg_jobs,
            args.e2e_concurrency,
            600,
            replicas=n,
        )
        for n in (1, 2)
    ]
    return pg_lines(runs[0], runs[1], args.pg_jobs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = find_wrk(install=not args.no_install)
    if wrk is None:
        if {"http", "postgres"} & set(args.parts):
            print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
            return 2
        wrk = "wrk"  # not needed by the parts asked for
    load = Load(wrk, args.threads, args.connections, args.duration)
    started = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures, profiles = run_parts(args, load, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="backserv-bench-") as tmp:
            figures, profiles = run_parts(args, load, Path(tmp))
    body = ["## Figures", "", *figures, "", "## Profiles", "", *profiles]
    body += ["", f"The whole run took {time.perf_counter() - started:.0f} s."]
    write_results(args.out, args, load, body)
    say(f"wrote {args.out}")
    return 0
