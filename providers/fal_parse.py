"""Reading fal's answers into a ``ProviderState``: the status, the result, a failure.

One set of rules for the status poll and for the webhook, so a request classifies the same
way whichever of them saw its end: the outputs (``images`` / ``image`` / ``video``) and the
``seed`` of a result; a failure by its ``error_type`` (``request_cancelled`` is a cancel, a
validation or input type blames the input), else by the app's replayed status (400 or 422:
the input, with the field named), else the app's fault.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass

import httpx

from providers.base import (
    Output,
    ProviderError,
    ProviderInputError,
    ProviderState,
    ProviderUnavailable,
    StateKind,
)
from providers.fal_errors import http_error

__all__ = ["Ended", "failed", "progress_from_logs", "read_status", "succeeded"]

CANCELLED_TYPE = "request_cancelled"  # fal's error_type for a request we cancelled
_LOG_LINES = 10  # how many of the latest log lines progress is looked for in
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_FRACTION = re.compile(r"(\d+)\s*/\s*(\d+)")


@dataclass(frozen=True)
class Ended:
    """A ``COMPLETED`` status: the result tells the rest."""

    error: str | None = None
    error_type: str | None = None
    #: ``metrics.inference_time``: the seconds fal reports the app ran (what it bills)
    compute_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.error_type is None

    @property
    def needs_result(self) -> bool:
        """Whether telling the failure's class needs the replayed result (its status)."""
        if self.ok or self.error_type == CANCELLED_TYPE:
            return False
        return _type_class(self.error_type) is None


def read_status(body: object) -> ProviderState | Ended:
    """A status answer: queued, running (progress from its logs, if it has them) or ended.

    Raises ``ValueError`` for an answer that is none of these.
    """
    if not isinstance(body, dict):
        raise ValueError("the status is not a JSON object")
    status = body.get("status")
    if status == "IN_QUEUE":
        position = body.get("queue_position")
        valid = isinstance(position, int) and not isinstance(position, bool)
        return ProviderState(StateKind.QUEUED, queue_position=position if valid else None)
    if status == "IN_PROGRESS":
        return ProviderState(StateKind.RUNNING, progress=progress_from_logs(body.get("logs")))
    if status == "COMPLETED":
        error, error_type = body.get("error"), body.get("error_type")
        return Ended(
            error if isinstance(error, str) or error is None else str(error),
            error_type if isinstance(error_type, str) or error_type is None else str(error_type),
            _seconds(body.get("metrics"), "inference_time"),
        )
    raise ValueError(f"unknown status {status!r}")


def succeeded(body: object) -> ProviderState:
    """A result's outputs and seed; ``ValueError`` when it has no readable file."""
    outputs, seed = _outputs(body)
    return ProviderState(StateKind.SUCCEEDED, progress=100, outputs=outputs, seed=seed)


def failed(
    error: str | None, error_type: str | None, result: httpx.Response | None
) -> ProviderState:
    """A run that failed: cancelled, the input's fault or the app's (``result``: the replayed
    answer, when it was read)."""
    if error_type == CANCELLED_TYPE:
        return ProviderState(StateKind.CANCELLED)
    found: ProviderError
    cls = _type_class(error_type)
    if cls is not None:
        found = cls(error or error_type)
    elif result is not None and result.status_code in (400, 422):
        found = http_error(result, "result")
    else:
        found = ProviderUnavailable(f"fal: the app failed: {error or error_type}")
    return ProviderState(StateKind.FAILED, error=found)


def _seconds(metrics: object, name: str) -> float | None:
    """A non-negative number of seconds from a metrics object, or None."""
    value = metrics.get(name) if isinstance(metrics, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _type_class(error_type: str | None) -> type[ProviderError] | None:
    kind = (error_type or "").lower()
    return ProviderInputError if "validation" in kind or "input" in kind else None


def progress_from_logs(logs: object) -> int | None:
    """The percentage the latest log lines report (``45%``, ``step 3/4``, ``3/4``), or None."""
    if not isinstance(logs, list):
        return None
    for line in reversed(logs[-_LOG_LINES:]):
        message = line.get("message") if isinstance(line, dict) else None
        if not isinstance(message, str):
            continue
        if (percent := _PERCENT.search(message)) and float(percent[1]) <= 100:
            return int(float(percent[1]))
        for done, total in _FRACTION.findall(message):
            if int(total) > 0 and int(done) <= int(total):
                return 100 * int(done) // int(total)
    return None


def _outputs(body: object) -> tuple[tuple[Output, ...], int | None]:
    """``images`` / ``image`` / ``video`` files as outputs, and the ``seed``."""
    if not isinstance(body, dict):
        raise ValueError("the result is not a JSON object")
    files = [(f, "image/png") for f in body.get("images") or []]
    for key, default in (("image", "image/png"), ("video", "video/mp4")):
        if body.get(key) is not None:
            files.append((body[key], default))
    outputs = tuple(_output(file, default) for file, default in files)
    if not outputs:
        raise ValueError("the result has no images and no video")
    seed = body.get("seed")
    return outputs, seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _output(file: object, default: str) -> Output:
    url = file.get("url") if isinstance(file, dict) else None
    if not isinstance(file, dict) or not isinstance(url, str) or not url:
        raise ValueError("a result file has no URL")
    content_type = file.get("content_type")
    if not isinstance(content_type, str) or not content_type:
        guessed = mimetypes.guess_type(url.partition("?")[0])[0]
        content_type = guessed if guessed and guessed.startswith(default[:6]) else default
    width, height = file.get("width"), file.get("height")
    return Output(
        content_type,
        url=url,
        width=width if isinstance(width, int) and not isinstance(width, bool) else None,
        height=height if isinstance(height, int) and not isinstance(height, bool) else None,
    )
