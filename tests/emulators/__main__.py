"""Run an emulator as its own process.

    python -m tests.emulators fal --port 9001 --latency 5
    python -m tests.emulators replicate --port 9002 --latency 5 --queue-time 1

Everything else is set at run time through ``/_emulator/behaviour`` (see control.py),
webhook faults included (``POST /_emulator/script {"route": "webhook", ...}``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from tests.emulators.behaviour import Behaviour
from tests.emulators.fal import create_fal_app
from tests.emulators.replicate import create_replicate_app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators", description=__doc__)
    parser.add_argument("emulator", choices=["fal", "replicate"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds a run takes")
    parser.add_argument("--queue-time", type=float, default=0.0, help="seconds in the queue")
    parser.add_argument("--queue-position", type=int, default=0, help="position at submit")
    parser.add_argument("--fail-runs", action="store_true", help="every run fails")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="scripted timeouts")
    parser.add_argument("--rate-limit", type=int, default=0, help="Replicate creates a minute")
    parser.add_argument("--backlog", type=int, default=4096, help="listen backlog")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    behaviour = Behaviour(
        latency=args.latency,
        queue_time=args.queue_time,
        queue_position=args.queue_position,
        fail_runs=args.fail_runs,
        hang_seconds=args.hang_seconds,
        rate_limit_per_minute=args.rate_limit,
    )
    factory = create_fal_app if args.emulator == "fal" else create_replicate_app
    uvicorn.run(
        factory(behaviour),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        backlog=args.backlog,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
