"""Translating fal-client and httpx errors into the gateway's, in one place (the edge).

Every call of the fal provider runs inside :func:`translate_errors`, which re-raises our
``ProviderError`` subclasses ``from`` the vendor's exception, as httpx's
``map_httpcore_exceptions`` does for httpcore. The HTTP status decides the class::

    400, 422          ProviderInputError   (message from the body's ``detail``)
    401, 403          ProviderUnavailable  code provider_auth
    402               ProviderUnavailable  code provider_out_of_credit
    404               ProviderUnavailable on submit (no such app), else ProviderLostRequest
    408, 409, 429, 5xx  ProviderTransientError (``retry_after`` from ``Retry-After``)
    other             ProviderUnavailable

Transport errors and timeouts are transient, except on a submit that may have reached fal:
then they are ``ProviderSubmitUncertain`` (see ``providers/fal.py``). A body we cannot read
is transient for a status read, ``ProviderUnavailable`` for a result and uncertain for a
submit (the 2xx means fal may hold the request).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import time
from collections.abc import Iterator
from datetime import UTC
from typing import Any, Literal

import fal_client.client as fal
import httpx
from fal_client.auth import MissingCredentialsError

from gateway.errors import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
)
from providers.transport import request_host

__all__ = ["Op", "SendTracker", "http_error", "retry_after", "translate_errors"]

log = logging.getLogger("backserv.providers.fal")

Op = Literal["submit", "status", "result", "cancel"]

#: transport errors raised before a byte of the request reached fal
_NOTHING_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


class SendTracker:
    """An httpcore ``trace`` hook: has the request begun to go out (its headers)?"""

    def __init__(self) -> None:
        self.value = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            self.value = True


@contextlib.contextmanager
def translate_errors(op: Op, sent: SendTracker | None = None) -> Iterator[None]:
    """Translate fal-client and httpx errors of ``op`` into ours (``from`` the original)."""
    try:
        yield
    except fal.FalClientHTTPError as exc:
        raise http_error(exc.response, op) from exc
    except (MissingCredentialsError, httpx.InvalidURL) as exc:
        raise ProviderUnavailable(f"fal: cannot {op} ({type(exc).__name__}).") from exc
    except _NOTHING_SENT as exc:
        raise ProviderTransientError(
            f"fal: cannot connect to {request_host(exc) or 'its host'} ({type(exc).__name__})."
        ) from exc
    except (httpx.HTTPError, fal.FalClientError, TimeoutError) as exc:
        what = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
        if op == "submit" and _may_have_arrived(exc, sent):
            raise ProviderSubmitUncertain(
                f"fal: the submit may have been accepted ({what}); it is not sent again."
            ) from exc
        raise ProviderTransientError(f"fal: the {op} failed ({what}).") from exc
    except (ValueError, KeyError, TypeError) as exc:  # a body we cannot read
        log.warning("fal: unexpected %s answer: %r", op, exc)
        message = f"fal: unexpected {op} answer ({type(exc).__name__})."
        if op == "submit":
            raise ProviderSubmitUncertain(message) from exc
        if op == "result":
            raise ProviderUnavailable(message) from exc
        raise ProviderTransientError(message) from exc


def _may_have_arrived(exc: Exception, sent: SendTracker | None) -> bool:
    """Whether a failed submit may have reached fal.

    Our own deadline (``asyncio.timeout``) may expire anywhere: the request reached fal only
    if httpcore had begun to send it. Any other error comes after connecting: assume it did.
    """
    if isinstance(exc, TimeoutError) and not isinstance(exc, fal.FalClientError):
        return sent is None or sent.value
    return True


def http_error(response: httpx.Response, op: Op) -> ProviderError:
    code = response.status_code
    detail, param = _detail(response)
    message = f"fal answered HTTP {code} to the {op}: {detail}"
    if code in (400, 422):
        return ProviderInputError(f"fal rejected the input: {detail}", param=param)
    if code in (401, 403):
        return ProviderUnavailable(message, code="provider_auth")
    if code == 402:
        return ProviderUnavailable(message, code="provider_out_of_credit")
    if code == 404:
        if op == "submit":
            return ProviderUnavailable(f"fal has no such app ({detail}).")
        return ProviderLostRequest(message)
    if code in (408, 409, 429) or code >= 500:
        return ProviderTransientError(message, retry_after=retry_after(response.headers))
    return ProviderUnavailable(message)


def _detail(response: httpx.Response) -> tuple[str, str | None]:
    """A readable message from the body's ``detail`` (text or ``[{loc, msg}]``), and the field."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return detail, None
    parts, fields = [], []
    items: list[Any] = detail if isinstance(detail, list) else []
    for item in items:
        if isinstance(item, dict):
            loc = item.get("loc")
            loc = loc if isinstance(loc, list) else []
            field = ".".join(str(p) for p in loc if p != "body")
            fields.append(field)
            parts.append(f"'{field}': {item.get('msg')}" if field else str(item.get("msg")))
    if parts:
        return "; ".join(parts), next((f for f in fields if f), None)
    return response.text.strip()[:300] or response.reason_phrase, None


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (it may be a number or an HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
