"""``backserv jobs list|show|cancel``: jobs of every owner, through the same service the faces
use. Its catalog is empty: these commands submit nothing, and must work whatever state the
catalog file is in."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from gateway.catalog import Catalog
from gateway.commands.database import with_store
from gateway.commands.output import local_time, note, print_json, print_table
from gateway.errors import GatewayError
from gateway.jobs import Job, Status
from gateway.service import JobService
from gateway.settings import Settings
from gateway.store.base import JobStore

JOBS_PAGE = 100


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="list, show and cancel jobs of every owner (admin)")
    jobs_sub = jobs.add_subparsers(dest="jobs_cmd", required=True)
    listing = jobs_sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--status", type=str.upper, choices=[s.value for s in Status])
    listing.add_argument("--limit", type=_positive, default=50, help="at most N (default 50)")
    listing.add_argument("--owner", metavar="KEY_ID", help="only this owner's jobs")
    listing.add_argument("--json", action="store_true", help="print the jobs as JSON")
    show = jobs_sub.add_parser("show", help="print one job as JSON, with its attempts")
    show.add_argument("job_id")
    cancel = jobs_sub.add_parser(
        "cancel", help="cancel a queued or running job (a running gateway stops it)"
    )
    cancel.add_argument("job_id")


def command(settings: Settings, args: argparse.Namespace) -> int:
    run = {"list": _list, "show": _show, "cancel": _cancel}[args.jobs_cmd]

    async def go(store: JobStore) -> int:
        try:
            return await run(JobService(store, Catalog([])), args)
        except GatewayError as exc:  # an unknown job, or one that cannot be cancelled
            note(f"backserv: {exc.message}")
            return 1

    return asyncio.run(with_store(settings, go))


def job_document(job: Job) -> dict[str, Any]:
    """The whole stored job, with what the attempts say (provider, retries, fallback)."""
    document = dataclasses.asdict(job)
    document.update(
        provider=job.provider, retry_count=job.retry_count, fallback_used=job.fallback_used
    )
    return document


async def _list(service: JobService, args: argparse.Namespace) -> int:
    status = Status(args.status) if args.status else None
    jobs: list[Job] = []
    after: str | None = None
    more = True
    while more and len(jobs) < args.limit:
        size = min(JOBS_PAGE, args.limit - len(jobs))
        page, more = await service.list(
            args.owner, limit=size, after=after, status=status, model=None
        )
        if not page:
            break
        jobs.extend(page)
        after = page[-1].id
        if more and len(jobs) < args.limit:  # a long listing shows that it is progressing
            note(f"read {len(jobs)} jobs...")
    if args.json:
        print_json([job_document(job) for job in jobs])
    elif not jobs:
        print("No jobs.")
    else:
        print_table(
            ("ID", "STATUS", "CREATED", "MODEL", "PROVIDER", "OWNER", "PROGRESS/ERROR"),
            [
                (
                    job.id,
                    job.status.value,
                    local_time(job.created_at, seconds=True),
                    job.model,
                    job.provider or job.lane,
                    job.owner,
                    job.error.get("code", "") if job.error else f"{job.progress}%",
                )
                for job in jobs
            ],
        )
    if more:
        note(f"(more jobs follow; raise --limit past {args.limit})")
    return 0


async def _show(service: JobService, args: argparse.Namespace) -> int:
    print_json(job_document(await service.get(None, args.job_id)))
    return 0


async def _cancel(service: JobService, args: argparse.Namespace) -> int:
    was = (await service.get(None, args.job_id)).status
    job = await service.cancel(None, args.job_id)
    print(f"Cancelled {job.id} (it was {was.value}).")
    return 0
