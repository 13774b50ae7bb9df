"""Sending one webhook attempt, and the retry schedule between attempts.

An attempt re-checks the target with the SSRF guard (DNS may have changed since the job was
created) and connects to an address it checked, never to the name again (no rebinding).
It POSTs the stored payload with the Standard Webhooks headers, follows no redirect, reads
no response body, and counts only a 2xx answer as delivered.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy

import httpx

from gateway import netguard
from gateway.errors import InvalidRequest, UnresolvableHost
from gateway.webhooks import signing as webhook_signing

USER_AGENT = "Back.Serv-Webhooks/1"
MAX_ADDRESSES = 3  # addresses tried in turn when a connection is refused or times out
MAX_ERROR = 300  # characters of an error kept on the delivery


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None
    #: retrying cannot help (the target is not allowed): fail the delivery now
    permanent: bool = False


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter (``base``, then twice as long each time, up to
    ``cap``), for ``window`` seconds from a delivery's creation; then the delivery failed."""

    base: float = 5.0
    cap: float = 600.0
    window: float = 24 * 3600.0
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - j, 1 + j]

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after attempt number ``attempt`` (1 for the first) failed."""
        raw = min(self.cap, self.base * 2.0 ** min(attempt - 1, 40))
        return raw * (1.0 - self.jitter + 2.0 * self.jitter * rng())

    def next_attempt(
        self,
        attempt: int,
        created_at: float,
        now: float,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """When to try again after attempt ``attempt`` failed, or None: give up."""
        at = now + self.delay(attempt, rng)
        return None if at > created_at + self.window else at


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


class Sender:
    def __init__(
        self,
        allow: netguard.AllowList,
        timeout: float,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.allow = allow
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,  # a proxy would connect by name, bypassing the pinned address
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_keepalive_connections=0),  # a TLS session per host name
                transport=self._transport,
            )
            # receivers are strangers to each other: keep no cookie of one for another
            self._client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def send(
        self, url: str, message_id: str, body: bytes, secret: str, timestamp: int
    ) -> Outcome:
        try:
            parsed = netguard.parse_url(url, param="webhook_url")
            addresses = await netguard.check_url(parsed, self.allow, param="webhook_url")
        except UnresolvableHost as exc:
            return Outcome(False, error=_short(exc.message))
        except InvalidRequest as exc:  # not allowed (any more), or not a URL at all
            return Outcome(False, error=_short(exc.message), permanent=True)
        signed = webhook_signing.headers(secret, message_id, timestamp, body)
        error = "no address to connect to"
        try:
            async with asyncio.timeout(self.timeout):
                for address in addresses[:MAX_ADDRESSES]:
                    target, headers, extensions = netguard.pinned(parsed, address)
                    headers.update(signed)
                    headers["user-agent"] = USER_AGENT
                    try:
                        return await self._post(target, body, headers, extensions)
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        error = f"cannot connect to {address}: {exc or type(exc).__name__}"
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return Outcome(False, error=_short(error))

    async def _post(
        self,
        target: httpx.URL,
        body: bytes,
        headers: dict[str, str],
        extensions: dict[str, object],
    ) -> Outcome:
        http = self._http()
        async with http.stream(
            "POST", target, content=body, headers=headers, extensions=extensions
        ) as response:
            code = response.status_code
        if 200 <= code < 300:
            return Outcome(True, code)
        if 300 <= code < 400:
            return Outcome(False, code, f"HTTP {code} (redirects are not followed)")
        return Outcome(False, code, f"HTTP {code}")
