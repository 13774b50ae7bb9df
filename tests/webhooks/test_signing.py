"""Webhook signatures (gateway/webhooks/signing.py): what a receiver's check accepts."""

from __future__ import annotations

import pytest

from gateway.webhooks.signing import headers, new_secret, verify

BODY = b'{"type":"job.completed"}'
NOW = 1_800_000_000


def test_a_signed_delivery_verifies_and_a_changed_body_does_not() -> None:
    secret = new_secret()
    signature = headers(secret, "msg_1", NOW, BODY)["webhook-signature"]

    assert verify(secret, "msg_1", str(NOW), signature, BODY, now=NOW + 10)
    assert not verify(secret, "msg_1", str(NOW), signature, BODY + b" ", now=NOW + 10)


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u0661\u0668", "9" * 5000, "", "-1", " 1"])
def test_a_timestamp_that_is_not_plain_digits_does_not_verify(timestamp: str) -> None:
    # "²" passes str.isdigit() and int() refuses it (as it refuses 5,000 digits): an
    # exception instead of a refusal
    secret = new_secret()
    signature = headers(secret, "msg_1", NOW, BODY)["webhook-signature"]

    assert not verify(secret, "msg_1", timestamp, signature, BODY, now=NOW)
