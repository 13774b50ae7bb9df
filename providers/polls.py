"""How many status reads (polls) a provider made: in all, and per request until it ends.

``Provider.status`` counts each read here. The metrics read ``total`` at scrape time
(``backserv_provider_polls_total``); the runner ``take``s a request's count when its attempt
ends (``backserv_provider_polls_per_job``): with webhooks on it should stay at one or two
(the read right after the submit, and a rare safety-net poll), without them it grows with the
request's run time. At most ``keep`` requests are tracked (the least recently read go first:
their count is lost, not wrong).
"""

from __future__ import annotations

from collections import OrderedDict

KEEP = 100_000


class PollCounts:
    def __init__(self, *, keep: int = KEEP) -> None:
        self.keep = keep
        self.total = 0
        self._by_request: OrderedDict[str, int] = OrderedDict()

    def add(self, request_id: str) -> None:
        """One status read of ``request_id``."""
        self.total += 1
        by_request = self._by_request
        by_request[request_id] = by_request.pop(request_id, 0) + 1
        if len(by_request) > self.keep:
            by_request.popitem(last=False)

    def take(self, request_id: str) -> int:
        """The reads of ``request_id`` so far (forgotten: its attempt ended)."""
        return self._by_request.pop(request_id, 0)
