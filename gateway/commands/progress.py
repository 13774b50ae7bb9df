"""How ``backserv run`` shows a job while it runs, on stderr: a live progress bar (rich) on
a terminal, one plain line per change elsewhere (a log, a CI job, a test)."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

#: a plain view prints progress only when it moved at least this many points
LINE_STEP = 10


def describe(job: dict[str, Any]) -> str:
    """``QUEUED``, ``QUEUED (queue position 3)``, ``PROCESSING``, ..."""
    status = str(job.get("status", "?"))
    position = job.get("queue_position")
    if isinstance(position, int) and status in ("QUEUED", "PROCESSING"):
        return f"{status} (queue position {position})"
    return status


def percent(job: dict[str, Any]) -> int:
    value = job.get("progress")
    return max(0, min(100, value)) if isinstance(value, int) else 0


class ProgressView(ABC):
    """Told of every state of the job seen, then that it ended."""

    @abstractmethod
    def show(self, job: dict[str, Any]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class BarView(ProgressView):
    """A live line: job id, status and queue position, a bar, the percentage, time taken."""

    def __init__(self, console: Console, job_id: str) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[job]}"),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self._progress.add_task("SUBMITTED", total=100, job=job_id)
        self._progress.start()

    def show(self, job: dict[str, Any]) -> None:
        self._progress.update(
            self._task, description=describe(job), completed=percent(job), refresh=True
        )

    def close(self) -> None:
        self._progress.stop()


class LineView(ProgressView):
    """One line per change of status or queue position, and per ``LINE_STEP`` points."""

    def __init__(self, stream: TextIO, job_id: str) -> None:
        self._stream = stream
        self._job_id = job_id
        self._said: tuple[str, int] | None = None

    def show(self, job: dict[str, Any]) -> None:
        text, done = describe(job), percent(job)
        if self._said is not None:
            said_text, said_done = self._said
            if text == said_text and done < said_done + LINE_STEP and done != 100:
                return
            if text == said_text and done == said_done:
                return
        self._said = (text, done)
        print(f"{self._job_id} {text} {done}%", file=self._stream, flush=True)

    def close(self) -> None:
        self._stream.flush()


def progress_view(job_id: str, stream: TextIO | None = None) -> ProgressView:
    """A bar on a terminal, lines anywhere else."""
    out = stream if stream is not None else sys.stderr
    if out.isatty():
        return BarView(Console(file=out, highlight=False), job_id)
    return LineView(out, job_id)
