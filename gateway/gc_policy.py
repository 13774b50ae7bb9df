"""How the cyclic garbage collector runs in a serving process (``backserv serve``).

CPython's full (generation-2) collection walks every container object alive, holding the
GIL, and nothing else runs meanwhile. The gateway keeps ~89,000 such objects from its
imports and startup, and about 60 more for each job in flight: on the bench machine a
full collection took 55-195 ms of CPU with 1,000-2,000 hosted jobs in flight, and came five
to seven times in a run of 2,000 jobs (issue #16). They were the event loop's longest
stalls. So, once the server is up:

- everything alive then is frozen (``gc.freeze``): modules, classes, the app, its settings
  and catalog live as long as the process, and no collection walks them again (should one
  of them end up in a garbage cycle, that cycle is never freed: startup's objects are a
  fixed set, so this cannot grow);
- a full collection waits for ``FULL_EVERY`` collections of generation 1 instead of
  CPython's 10 (and, as before, for CPython's own rule: the objects that reached generation
  2 since the last one must be a quarter of those it kept).

The young generations keep CPython's thresholds: raised to 2,000 or 5,000, their own pauses
grew to 30-55 ms. What waits longer is only cyclic garbage that outlived two young
collections (about five objects a hosted job, measured: the response parsers of outgoing
HTTP calls, gateway/http1.py); everything else is still freed by reference counting or by
the young collections as before.
"""

from __future__ import annotations

import gc

#: collections of generation 1 between two full collections (CPython's default is 10)
FULL_EVERY = 100


def tune_for_serving() -> None:
    """Freeze what startup left alive and space full collections out (see the module)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)
