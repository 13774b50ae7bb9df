"""How the commands print: aligned tables with headers (rich), or JSON for scripts.

A table goes to stdout; notes (progress of a long listing, hints) go to stderr, so a pipe
gets only the rows. Written to something that is not a terminal, a table is never wrapped
or cut: each row stays one line for ``grep`` and ``cut``. Cell text is printed as it is
(no rich markup), since names and errors come from users.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: the width of a console that is not a terminal: wide enough that no row ever wraps
PIPE_WIDTH = 100_000


def console(file: TextIO | None = None) -> Console:
    """A console on ``file`` (default: the current stdout, looked up now, not at import)."""
    stream = file if file is not None else sys.stdout
    terminal = stream.isatty()
    return Console(
        file=stream,
        width=None if terminal else PIPE_WIDTH,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    """Rows under a header line, each column aligned; numbers and text alike as given."""
    grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
    for name in columns:
        grid.add_column(name, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    return grid


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    out = console()
    if out.is_terminal:
        out.print(table(columns, rows))
        return
    with out.capture() as captured:  # to a pipe: the same lines, without trailing blanks
        out.print(table(columns, rows))
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def print_json(document: Any) -> None:
    """``document`` as indented JSON on stdout (dataclass-free values; others via ``str``)."""
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str).decode()
    sys.stdout.write(text + "\n")


def note(message: str) -> None:
    """A line for the person at the terminal, on stderr."""
    print(message, file=sys.stderr, flush=True)


def local_time(timestamp: float | None, seconds: bool = False) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""), time.localtime(timestamp))
