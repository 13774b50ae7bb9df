"""Reading Replicate's prediction objects into a ``ProviderState``: one set of rules for the
poll (``GET /v1/predictions/{id}``) and the webhook (the same object, POSTed).

Outputs are every URL in ``output`` (a URL, a list, a dict, nested at will), typed by their
extension or ``data:`` media type, else by the job's kind; the seed is the input's, else a
``Using seed: N`` log line; a failure whose error reads like an input problem blames the
input (Replicate gives no code). ``aborted`` (a ``Cancel-After`` deadline passed before the
start) is a cancel, although replicate 1.0.7's model refuses that status.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from replicate.prediction import Prediction

from providers.base import (
    Output,
    ProviderInputError,
    ProviderState,
    ProviderTransientError,
    ProviderUnavailable,
    StateKind,
)

__all__ = ["aborted", "prediction_state"]

_SEED_LOG = re.compile(r"^\s*Using seed:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
#: a failed prediction whose error reads like this blames the input (Replicate gives no code)
_INPUT_FAILURE = re.compile(r"invalid|validation|\binput\b", re.IGNORECASE)
_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "webm": "video/webm",
}


def aborted(exc: ValueError) -> bool:
    """Whether the client rejected a prediction because its status was ``aborted``.

    replicate 1.0.7 types ``status`` as a Literal without ``aborted`` (set when a
    ``Cancel-After`` deadline passes before start), so its pydantic v1 model refuses it.
    """
    errors = getattr(exc, "errors", None)
    found = errors() if callable(errors) else []
    return any(
        isinstance(e, dict)
        and e.get("loc") == ("status",)
        and (e.get("ctx") or {}).get("given") == "aborted"
        for e in found
    )


def prediction_state(prediction: Prediction, kind: str) -> ProviderState:
    state = _state(prediction, kind)
    if state.terminal:  # what Replicate bills: the seconds the prediction ran
        return dataclasses.replace(state, compute_seconds=_predict_time(prediction))
    return state


def _predict_time(prediction: Prediction) -> float | None:
    value = (prediction.metrics or {}).get("predict_time")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _state(prediction: Prediction, kind: str) -> ProviderState:
    status = prediction.status
    if status == "starting":
        return ProviderState(StateKind.QUEUED)
    if status == "processing":
        found = prediction.progress
        progress = None if found is None else max(0, min(100, round(found.percentage * 100)))
        return ProviderState(StateKind.RUNNING, progress=progress)
    if status == "succeeded":
        outputs = tuple(_outputs(prediction.output, kind))
        return ProviderState(
            StateKind.SUCCEEDED, progress=100, outputs=outputs, seed=_seed(prediction)
        )
    if status == "failed":
        text = str(prediction.error or "").strip()[:2000] or "The prediction failed."
        error_class = ProviderInputError if _INPUT_FAILURE.search(text) else ProviderUnavailable
        return ProviderState(StateKind.FAILED, error=error_class(text))
    if status == "canceled":
        return ProviderState(StateKind.CANCELLED)
    raise ProviderTransientError(f"Replicate answered an unknown status {status!r}.")


def _outputs(output: object, kind: str, name: str | None = None) -> Iterator[Output]:
    """Every URL in ``output``: a URL, a list of them, or a dict of them (nested at will)."""
    if isinstance(output, str):
        if output.startswith(("http://", "https://", "data:")):
            extra = {} if name is None else {"name": name}
            yield Output(_content_type(output, kind), url=output, extra=extra)
    elif isinstance(output, list | tuple):
        for item in output:
            yield from _outputs(item, kind, name)
    elif isinstance(output, dict):
        for key, value in output.items():
            yield from _outputs(value, kind, str(key))


def _content_type(url: str, kind: str) -> str:
    if url.startswith("data:"):
        declared = url[5:].partition(",")[0].partition(";")[0].strip().lower()
        if declared:
            return declared
    else:
        extension = posixpath.splitext(urlsplit(url).path)[1].lstrip(".").lower()
        if extension in _CONTENT_TYPES:
            return _CONTENT_TYPES[extension]
    return "video/mp4" if kind == "video" else "image/png"


def _seed(prediction: Prediction) -> int | None:
    """The prediction's ``input.seed``, else a ``Using seed: N`` log line (random seeds)."""
    seed = (prediction.input or {}).get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    found = _SEED_LOG.search(prediction.logs or "")
    return int(found[1]) if found else None
