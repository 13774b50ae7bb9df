"""What the core tells an observer as jobs move: the seam between the core and the metrics.

``JobService``, ``JobRunner`` and ``Scheduler`` take a ``JobObserver`` in their constructors
and call it where things happen; this base class ignores every call, so a core built without
metrics (most unit tests, the CLI) pays one empty method call. ``metrics.Metrics`` (beside
this module) is the implementation that counts. Nothing here imports prometheus-client.

Each call is made once per event, by the process that caused it, so summing a counter over
every replica counts each event once: a submit by the replica that stored the job, a finish
by the replica whose write ended it, a cancel by the replica that answered the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.jobs import Job, Status


class JobObserver:
    """Receives job events; every method is a no-op here (override the ones you need)."""

    def job_submitted(self, job: Job) -> None:
        """A new job was stored QUEUED (an idempotent replay is not a new job)."""

    def job_finished(self, job: Job, status: Status) -> None:
        """This process moved ``job`` to the terminal ``status`` (COMPLETED, FAILED or
        CANCELLED)."""

    def job_claimed(self, job: Job) -> None:
        """The scheduler claimed ``job`` (``job.lease_token == 1`` on its first claim)."""

    def provider_accepted(self, job: Job, route: str, request_id: str) -> None:
        """The provider accepted ``job``'s submit on ``route`` as ``request_id`` (recorded)."""

    def provider_done(self, provider: str, outcome: str, seconds: float) -> None:
        """An attempt on ``provider`` reached a verdict (``succeeded``, its outputs stored, or
        ``failed``) ``seconds`` after it was opened for its submit."""

    def provider_ended(self, provider: str, via: str) -> None:
        """The runner learned that a request on ``provider`` ended (succeeded, failed or was
        cancelled there), ``via`` a ``webhook`` delivery or a ``poll``."""

    def provider_polled(self, provider: str, polls: int) -> None:
        """An attempt that reached ``provider`` ended after ``polls`` status reads."""

    def webhook_arrived(self, provider: str) -> None:
        """A delivery reached the ingress route of ``provider`` (before it is read)."""

    def retried(self, job: Job, provider: str, route: str) -> None:
        """The runner is about to retry ``route`` after a retryable failure."""

    def webhook_received(self, provider: str, outcome: str) -> None:
        """A provider's webhook delivery arrived: ``verified`` (handed to its runner),
        ``rejected`` (its signature did not verify) or ``error`` (unreadable, or the keys to
        verify it could not be had)."""

    def fell_back(self, job: Job, route: str) -> None:
        """The runner moved ``job`` on to the fallback ``route`` of its chain."""


class Observers(JobObserver):
    """Tells every one of ``observers`` of each event, in order (metrics and the job log)."""

    def __init__(self, *observers: JobObserver) -> None:
        self.observers = observers

    def job_submitted(self, job: Job) -> None:
        for observer in self.observers:
            observer.job_submitted(job)

    def job_finished(self, job: Job, status: Status) -> None:
        for observer in self.observers:
            observer.job_finished(job, status)

    def job_claimed(self, job: Job) -> None:
        for observer in self.observers:
            observer.job_claimed(job)

    def provider_accepted(self, job: Job, route: str, request_id: str) -> None:
        for observer in self.observers:
            observer.provider_accepted(job, route, request_id)

    def provider_done(self, provider: str, outcome: str, seconds: float) -> None:
        for observer in self.observers:
            observer.provider_done(provider, outcome, seconds)

    def provider_ended(self, provider: str, via: str) -> None:
        for observer in self.observers:
            observer.provider_ended(provider, via)

    def provider_polled(self, provider: str, polls: int) -> None:
        for observer in self.observers:
            observer.provider_polled(provider, polls)

    def webhook_arrived(self, provider: str) -> None:
        for observer in self.observers:
            observer.webhook_arrived(provider)

    def retried(self, job: Job, provider: str, route: str) -> None:
        for observer in self.observers:
            observer.retried(job, provider, route)

    def webhook_received(self, provider: str, outcome: str) -> None:
        for observer in self.observers:
            observer.webhook_received(provider, outcome)

    def fell_back(self, job: Job, route: str) -> None:
        for observer in self.observers:
            observer.fell_back(job, route)
