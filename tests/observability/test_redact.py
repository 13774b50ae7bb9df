"""URLs in log lines (gateway/observability/redact.py): no user info, query string or fragment."""

from __future__ import annotations

import logging

import httpx
import pytest

from gateway.observability.redact import RedactUrlArgs, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/in?token=SECRET", "https://hooks.example.com/in"),
        ("http://user:SECRET@10.0.0.1:8080/hook", "http://10.0.0.1:8080/hook"),
        ("https://cdn.example/o.png?X-Amz-Signature=SECRET#SECRET", "https://cdn.example/o.png"),
        ("/files/job-1/0.png?expires=1&sig=SECRET", "/files/job-1/0.png"),
        ("https://hooks.example.com/plain", "https://hooks.example.com/plain"),
        ("http://[::1/x?token=SECRET", "<a URL that does not parse>"),
    ],
)
def test_a_url_loses_its_user_info_query_and_fragment(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_filter_rewrites_url_arguments_only() -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: %s %s "%s %d %s"',
        ("POST", httpx.URL("http://u:SECRET@1.2.3.4/hook?token=SECRET"), "HTTP/1.1", 500, "Oops"),
        None,
    )

    assert RedactUrlArgs().filter(record)

    assert record.getMessage() == 'HTTP Request: POST http://1.2.3.4/hook "HTTP/1.1 500 Oops"'
