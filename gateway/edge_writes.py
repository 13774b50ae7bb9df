"""A response's head and body in one write: what a response cycle writes in one turn of the
event loop goes to the socket together.

uvicorn writes a response's head when the application sends ``http.response.start`` and its
body when it sends ``http.response.body``: two ``send`` system calls, two TCP segments (the
socket has ``TCP_NODELAY``) and two reads for the client, for every answer. Under wrk that
pair was half of a poll's CPU, system time included (py-spy: ``RequestResponseCycle.send``).
``CombinedWrites`` stands in for the transport of each request's cycle (``gateway/edge.py``):
a write is held until the next one (then both go in one call) or, at the latest, the end of
the loop turn it was made in, so nothing waits on an application that sends its head and
body later (an event stream's head is flushed at once, in the same turn).

Only one write is ever held, and only a small one; large writes go as they come.
"""

from __future__ import annotations

import asyncio

#: a write this size or smaller may be held for the next one
HOLD_BYTES = 16384
#: a held write and the next are joined into one buffer up to this size, else written as
#: two buffers in one call (one ``writev``)
JOIN_BYTES = 65536


class CombinedWrites:
    """The writing side of a transport, for a response cycle: ``write`` and ``close`` (which
    flushes first); ``is_closing`` as the transport's. Reading, flow control and the
    protocol's own writes stay on the transport itself, which must ``flush`` before it
    writes anything of its own."""

    __slots__ = ("held", "loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if len(held) + len(data) <= JOIN_BYTES:
                self.transport.write(held + data)
            else:
                self.transport.writelines((held, data))
        elif data and len(data) <= HOLD_BYTES and not self.transport.is_closing():
            self.held = bytes(data)
            self.loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Write what is held, if anything (at the end of the turn it was held in)."""
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()
