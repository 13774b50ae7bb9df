"""``backserv run MODEL [PROMPT] [--param K=V ...] [--out FILE]``: submit a job to a running
gateway, show its progress until it ends, and save what it made.

It is a client of the Jobs API (``POST /v1/jobs``, the job's event stream, the signed result
URLs), so it works against any gateway it can reach with a key: ``--url`` / ``BACKSERV_URL``
and ``--key`` / ``BACKSERV_API_KEY``. It reads no settings and opens no database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from gateway.commands.client import GatewayClient
from gateway.commands.output import note, print_json
from gateway.commands.progress import progress_view
from gateway.errors import RemoteCallFailed

DEFAULT_URL = "http://localhost:4093"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
#: event streams that may fail in a row before the command falls back to reading the job
STREAM_RETRIES = 5
#: seconds between reads of the job once its event stream keeps failing
POLL_SECONDS = 2.0


def param(text: str) -> tuple[str, Any]:
    """``K=V``: V is read as JSON when it is JSON (``512``, ``true``, ``[1, 2]``, ``"7"``),
    else taken as text (``sampler=euler``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not K=V (e.g. width=512)")
    try:
        return name.strip(), json.loads(value)
    except ValueError:
        return name.strip(), value


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="submit a job to a running gateway, show its progress and save the result",
        description="Submit a job to a running gateway (the Jobs API), follow it with a "
        "progress bar, and save its files.",
    )
    run.add_argument("model", help="a model id (backserv models, or GET /v1/models)")
    run.add_argument(
        "prompt",
        nargs="?",
        help="the prompt (input.prompt); optional for kinds without one, such as upscale",
    )
    run.add_argument(
        "--param",
        "-p",
        type=param,
        action="append",
        default=[],
        metavar="K=V",
        help="an input field, repeatable: -p width=512 -p seed=7",
    )
    run.add_argument(
        "--out",
        "-o",
        type=Path,
        metavar="FILE",
        help="where to save the result (several: FILE-0.png, FILE-1.png, ...); "
        "default: the job id, in this directory",
    )
    run.add_argument("--priority", type=int, help="-100..100, higher runs first")
    run.add_argument(
        "--url",
        default=os.environ.get("BACKSERV_URL") or DEFAULT_URL,
        help=f"the gateway (default: BACKSERV_URL, else {DEFAULT_URL})",
    )
    run.add_argument(
        "--key",
        default=os.environ.get("BACKSERV_API_KEY"),
        help="an API key (default: BACKSERV_API_KEY)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print the finished job as JSON on stdout (progress stays on stderr)",
    )


def command(args: argparse.Namespace) -> int:
    if not args.key:
        note("backserv: no API key: give --key or set BACKSERV_API_KEY")
        return 2
    job_input: dict[str, Any] = {}
    if args.prompt is not None:
        job_input["prompt"] = args.prompt
    job_input.update(dict(args.param))
    try:
        return asyncio.run(_run(args, job_input))
    except RemoteCallFailed as exc:
        field = f" (field {exc.param})" if exc.param else ""
        note(f"backserv: {exc.message}{field}")
        return 1
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, job_input: dict[str, Any]) -> int:
    client = GatewayClient(args.url, args.key)
    try:
        job = await client.submit(args.model, job_input, args.priority)
        view = progress_view(job["id"])
        try:
            view.show(job)
            job = await follow(client, job, view.show)
        except asyncio.CancelledError:  # Ctrl-C: the job goes on; say how to find it
            note(
                f"\nbackserv: stopped watching; job {job['id']} goes on at the gateway "
                f"(GET /v1/jobs/{job['id']}, or cancel it: POST /v1/jobs/{job['id']}/cancel)"
            )
            raise
        finally:
            view.close()
        if args.json:
            print_json(job)
        if job["status"] != "COMPLETED":
            error = job.get("error") or {}
            note(
                f"backserv: job {job['id']} {job['status']}: "
                f"{error.get('message', 'no error given')} ({error.get('code', 'no code')})"
            )
            return 1
        saved = await save(client, job, args.out)
        for path, size, entry in saved:
            shape = f"{entry.get('width')}x{entry.get('height')}, " if entry.get("width") else ""
            line = f"Saved {path} ({shape}{entry.get('content_type', '?')}, {size} bytes)"
            if args.json:
                note(line)
            else:
                print(line)
        return 0
    finally:
        await client.aclose()


async def follow(
    client: GatewayClient, job: dict[str, Any], show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Follow the job until it ends, calling ``show`` with each state: on its event stream,
    reopened where it left off when it ends or breaks; after ``STREAM_RETRIES`` breaks in a
    row, by reading the job every ``POLL_SECONDS``."""
    last_id = ""
    failures = 0
    while job["status"] not in TERMINAL:
        if failures >= STREAM_RETRIES:
            await asyncio.sleep(POLL_SECONDS)
            job = await client.get(job["id"])
            show(job)
            continue
        try:
            async for event in client.events(job["id"], last_id):
                job, last_id, failures = event.job, event.id or last_id, 0
                show(job)
        except RemoteCallFailed:
            failures += 1
            await asyncio.sleep(min(failures, POLL_SECONDS))
            job = await client.get(job["id"])  # it may have ended meanwhile
            show(job)
    return job


def outputs(job: dict[str, Any]) -> list[dict[str, Any]]:
    result = job.get("result") or {}
    files = result.get("images") or result.get("videos") or []
    return [f for f in files if isinstance(f, dict) and isinstance(f.get("url"), str)]


def targets(job: dict[str, Any], files: list[dict[str, Any]], out: Path | None) -> list[Path]:
    """Where each output goes: ``out`` for one, ``out``'s stem + ``-N`` for several; without
    ``out``, the job id with the file's own extension, in the working directory."""
    paths = []
    for n, entry in enumerate(files):
        suffix = PurePosixPath(urlsplit(entry["url"]).path).suffix or (
            mimetypes.guess_extension(str(entry.get("content_type", ""))) or ""
        )
        if out is None:
            base = Path(job["id"] + (f"-{n}" if len(files) > 1 else "") + suffix)
        elif len(files) == 1:
            base = out
        else:
            base = out.with_name(f"{out.stem}-{n}{out.suffix or suffix}")
        paths.append(base)
    return paths


async def save(
    client: GatewayClient, job: dict[str, Any], out: Path | None
) -> list[tuple[Path, int, dict[str, Any]]]:
    files = outputs(job)
    if not files:
        raise RemoteCallFailed(f"job {job['id']} completed without a file to save")
    saved = []
    for path, entry in zip(targets(job, files, out), files, strict=True):
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        saved.append((path, await client.download(entry["url"], path), entry))
    return saved
