"""Reading a count, a size or a time stamp from text a client or a remote server sent.

``str.isdigit()`` is not a guard for ``int()``: it accepts "²" and other Unicode digits that
``int()`` refuses, and ``int()`` refuses more than 4,300 digits as well; either made a 500
out of a query parameter or a header.
"""

from __future__ import annotations

import re

#: ASCII digits only; 18 of them fit a signed 64-bit integer
_DIGITS = re.compile(r"[0-9]{1,18}")


def parse_digits(text: str) -> int | None:
    """The value of ``text`` when it is 1 to 18 ASCII digits, else None."""
    return int(text) if _DIGITS.fullmatch(text) else None
