"""A noisy neighbour, run as its own process by tests/scenarios/test_flood.py and bench/fairness.py.

``python -m tests.scenarios.flood_client BASE_URL API_KEY CONNECTIONS RATE`` opens that many
keep-alive connections and, while flooding, has each one submit an image job and poll the last
job it got, in turn, ``RATE`` requests a second from all of them together (0: as fast as the
gateway answers). Commands come one per line on stdin:
``on`` starts the flood (answered ``flooding`` once every connection has had an answer),
``off`` stops it (answered ``quiet`` once every request in flight is back), ``quit`` prints
the counts of answers by kind as one JSON line and exits.

A process of its own, so the flood's client-side work does not share an event loop (or a
GIL) with the client whose latency the test measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from urllib.parse import urlsplit

JOB = {"model": "sandbox-image", "prompt": "flood", "width": 64, "height": 64}


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP, cheaply: the flood's
    client-side work per request is a small fraction of the gateway's, so it is the
    gateway that the flood loads, not the machine's CPU in general."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
        self.writer.write(head + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        for line in headers.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


class Flood:
    def __init__(self, base_url: str, key: str, connections: int, rate: float) -> None:
        self.rate = rate  # requests per second from all connections together; 0: no limit
        self.next_at = 0.0
        url = urlsplit(base_url)
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.auth = f"Host: {url.netloc}\r\nAuthorization: Bearer {key}\r\n".encode()
        body = json.dumps(JOB).encode()
        self.submit = (
            b"POST /v1/jobs/images HTTP/1.1\r\n"
            + self.auth
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self.counts: Counter[str] = Counter()
        self.on = asyncio.Event()
        self.idle = [asyncio.Event() for _ in range(connections)]
        self.answered = asyncio.Event()  # set at every answer

    def count(self, what: str) -> None:
        self.counts[what] += 1
        self.answered.set()

    async def worker(self, idle: asyncio.Event) -> None:
        conn = Connection(*await asyncio.open_connection(*self.address))
        poll: bytes | None = None
        try:
            while True:
                if not self.on.is_set():
                    idle.set()
                    await self.on.wait()
                idle.clear()
                await self.pace()
                status, body = await conn.request(self.submit)
                self.count(f"submit {status}")
                if status == 202:
                    job_id = json.loads(body)["id"]
                    poll = f"GET /v1/jobs/{job_id} HTTP/1.1\r\n".encode() + self.auth + b"\r\n"
                if poll is not None:
                    await self.pace()
                    status, _ = await conn.request(poll)
                    self.count(f"poll {status}")
        finally:
            conn.writer.close()

    async def pace(self) -> None:
        """Wait for the next request's turn, ``1 / rate`` after the last one's (no bursts
        to catch up when the gateway was slower than the rate)."""
        if self.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.next_at = max(self.next_at + 1 / self.rate, now)
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)

    async def start(self) -> None:
        """Until every connection is busy and each has had an answer, on average."""
        target = sum(self.counts.values()) + len(self.idle)
        self.on.set()
        while any(e.is_set() for e in self.idle) or sum(self.counts.values()) < target:
            self.answered.clear()
            await self.answered.wait()

    async def stop(self) -> None:
        """Until no request is in flight."""
        self.on.clear()
        await asyncio.gather(*(e.wait() for e in self.idle))


async def main(base_url: str, key: str, connections: int, rate: float) -> None:
    flood = Flood(base_url, key, connections, rate)
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(flood.worker(idle)) for idle in flood.idle]
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "on":
            await flood.start()
            print("flooding", flush=True)
        elif line == "off":
            await flood.stop()
            print("quiet", flush=True)
        else:  # "quit", or stdin closed
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            print(json.dumps(dict(flood.counts)), flush=True)
            return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
