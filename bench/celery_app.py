"""The Celery side of target 3: a no-op task, Redis as broker and result backend.

The harness uses Redis databases 11 (broker) and 12 (results) on 127.0.0.1:6379 and empties
them before a run; set BENCH_REDIS_URL to use another server.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
BROKER_DB, BACKEND_DB = 11, 12

app = Celery("bench", broker=f"{REDIS}/{BROKER_DB}", backend=f"{REDIS}/{BACKEND_DB}")
app.conf.update(worker_hijack_root_logger=False, task_acks_late=False, result_expires=600)


@app.task(name="bench.noop")
def noop() -> None:
    return None
