"""Counts and time stamps read from text (gateway/digits.py)."""

from __future__ import annotations

import pytest

from gateway.digits import parse_digits


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("42", 42), ("9" * 18, 10**18 - 1)])
def test_plain_ascii_digits_are_read(text: str, value: int) -> None:
    assert parse_digits(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "\u00b2", "\u0663", "1\u00b2", "9" * 19, "9" * 5000, "-1", "+1", " 1", "1_0", "1.0"],
)
def test_anything_else_is_none_never_an_exception(text: str) -> None:
    assert parse_digits(text) is None
