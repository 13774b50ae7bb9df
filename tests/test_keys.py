"""The checks of key management (gateway/keys.py) that the API and the CLI share."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.keys import check_limit, check_name, check_scopes


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("rate_limit_per_second", 0, 0.0),
        ("rate_limit_per_second", 2.5, 2.5),
        ("rate_limit_burst", 3.0, 3),
        ("max_active_jobs", 0, 0),
        ("max_active_jobs", None, None),
    ],
)
def test_limits_within_their_bounds_are_stored_as_numbers(
    field: str, value: float | None, expected: float | None
) -> None:
    stored = check_limit(field, value)
    assert stored == expected and type(stored) is type(expected)


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("max_active_jobs", 10**400, "out_of_range"),  # the CLI parses any int: no overflow
        ("rate_limit_per_second", 10**400, "out_of_range"),
        ("rate_limit_per_second", float("inf"), "invalid_value"),
        ("rate_limit_per_second", float("nan"), "invalid_value"),
        ("rate_limit_burst", 1.5, "invalid_type"),
        ("rate_limit_burst", "3", "invalid_type"),
        ("max_active_jobs", False, "invalid_type"),
    ],
)
def test_bad_limits_are_invalid_requests_naming_the_field(
    field: str, value: object, code: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_limit(field, value)
    assert (info.value.param, info.value.code) == (field, code)


def test_names_are_trimmed_printable_and_bounded() -> None:
    assert check_name("  ci runner ") == "ci runner"
    for bad in ("", "   ", "tab\there", "x" * 201, "nul\x00"):
        with pytest.raises(InvalidRequest):
            check_name(bad)


def test_scopes_are_known_names_stored_space_separated() -> None:
    assert check_scopes([]) == ""
    assert check_scopes(["admin", "admin"]) == "admin"
    for bad in ("admin", ["root"], [1]):
        with pytest.raises(InvalidRequest):
            check_scopes(bad)
