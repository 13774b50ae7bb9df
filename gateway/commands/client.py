"""The command line's HTTP client of a running gateway (the Jobs API): submit a job, follow
its events, read it, download its files. Every call has a timeout; every failure is a
``RemoteCallFailed`` carrying the gateway's own message (its OpenAI-style error envelope)
or, when the gateway cannot be reached, the address tried."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.errors import RemoteCallFailed

#: seconds to connect, and to wait for an ordinary answer
CALL_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: an event stream sends a keep-alive comment every 15 s: silence for longer means it is gone
STREAM_TIMEOUT = httpx.Timeout(10.0, read=45.0)
#: a result file's download: connect, and the longest pause between two chunks
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of ``GET /v1/jobs/{id}/events``: its name, id and the job."""

    name: str
    id: str
    job: dict[str, Any]


class GatewayClient:
    def __init__(
        self, url: str, key: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": "backserv-cli"},
            timeout=CALL_TIMEOUT,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self, model: str, job_input: dict[str, Any], priority: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "input": job_input}
        if priority is not None:
            body["priority"] = priority
        return await self._json("POST", "/v1/jobs", json=body)

    async def get(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/jobs/{job_id}")

    async def events(self, job_id: str, last_event_id: str = "") -> AsyncIterator[Event]:
        """The job's events until the stream ends (after the terminal one, or when the server
        closes it); raises ``RemoteCallFailed`` if it cannot be opened or breaks."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            async with self._http.stream(
                "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=STREAM_TIMEOUT
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._refused(response)
                name, eid, data = "message", "", ""
                async for line in response.aiter_lines():
                    if line == "":
                        if data:
                            yield Event(name, eid, json.loads(data))
                        name, eid, data = "message", "", ""
                    elif line.startswith(":"):
                        continue  # a keep-alive comment
                    else:
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if field == "event":
                            name = value
                        elif field == "id":
                            eid = value
                        elif field == "data":
                            data = f"{data}\n{value}" if data else value
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        except ValueError as exc:  # a data line that is not JSON
            raise RemoteCallFailed(f"{self.url} sent an event that is not JSON") from exc

    async def download(self, url: str, path: Path) -> int:
        """Save the file at ``url`` (a signed result URL: no key needed) to ``path``, whole or
        not at all; returns its size."""
        partial = path.with_name(f".{path.name}.part")
        size = 0
        try:
            async with self._http.stream("GET", url, timeout=DOWNLOAD_TIMEOUT) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._refused(response)
                with partial.open("wb") as file:
                    async for chunk in response.aiter_bytes():
                        file.write(chunk)
                        size += len(chunk)
            os.replace(partial, path)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        finally:
            partial.unlink(missing_ok=True)
        return size

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise self._refused(response)
        try:
            document = response.json()
        except ValueError as exc:
            raise RemoteCallFailed(f"{self.url}{path} answered with something not JSON") from exc
        if not isinstance(document, dict):
            raise RemoteCallFailed(f"{self.url}{path} answered with something not a JSON object")
        return document

    def _unreachable(self, exc: httpx.HTTPError) -> RemoteCallFailed:
        what = type(exc).__name__
        detail = str(exc) or what
        return RemoteCallFailed(
            f"cannot reach the gateway at {self.url} ({detail}); is it running? "
            "Give its address with --url or BACKSERV_URL."
        )

    def _refused(self, response: httpx.Response) -> RemoteCallFailed:
        """The gateway's error envelope as one line: status, message, and the field."""
        message, param, code = response.reason_phrase, None, None
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            param = error.get("param")
            code = error.get("code")
        hint = ""
        if response.status_code == 401:
            hint = " Give a key with --key or BACKSERV_API_KEY."
        return RemoteCallFailed(
            f"the gateway answered {response.status_code}: {message}{hint}",
            param=param if isinstance(param, str) else None,
            code=code if isinstance(code, str) else None,
        )
