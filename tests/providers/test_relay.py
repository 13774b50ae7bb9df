"""A delivery's state as text and back (providers/relay.py), for the replica following it."""

from __future__ import annotations

import pytest

from gateway.errors import ProviderInputError, ProviderResultLost
from providers.base import Output, ProviderState, StateKind
from providers.relay import decode_state, encode_state


def test_a_succeeded_state_with_its_outputs_reads_back_the_same() -> None:
    state = ProviderState(
        StateKind.SUCCEEDED,
        progress=100,
        outputs=(
            Output("image/png", url="https://cdn.example/a.png", width=1024, height=768),
            Output("image/webp", data=b"\x00\xffRIFF", extra={"nsfw": False, "tags": ["a"]}),
        ),
        seed=42,
        compute_seconds=1.5,
    )
    text = encode_state(state)
    assert text is not None and "\n" not in text
    assert decode_state(text) == state


def test_a_failed_state_keeps_its_error_class_code_and_message() -> None:
    error = ProviderInputError("the prompt was refused", code="content_policy", param="prompt")
    state = decode_state(encode_state(ProviderState(StateKind.FAILED, error=error)))
    assert state is not None and state.kind is StateKind.FAILED
    assert type(state.error) is ProviderInputError
    assert (state.error.message, state.error.code, state.error.param) == (
        "the prompt was refused",
        "content_policy",
        "prompt",
    )
    lost = decode_state(encode_state(ProviderState(StateKind.FAILED, error=ProviderResultLost())))
    assert lost is not None and type(lost.error) is ProviderResultLost


def test_what_cannot_be_relayed_faithfully_is_relayed_as_read_it_now() -> None:
    assert encode_state(None) is None
    odd = ProviderState(StateKind.SUCCEEDED, outputs=(Output("image/png", extra={"x": {1, 2}}),))
    assert encode_state(odd) is None  # an extra that is not JSON

    class VendorError(ProviderInputError):
        pass

    assert encode_state(ProviderState(StateKind.FAILED, error=VendorError())) is None


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[]",
        '{"kind": "exploded"}',
        '{"kind": "succeeded", "outputs": [{"url": "u"}]}',
        '{"kind": "succeeded", "outputs": [{"content_type": "image/png", "data": "***"}]}',
        '{"kind": "succeeded", "progress": "50"}',
        '{"kind": "failed", "error": {"class": "WebhookRejected", "message": "m"}}',
    ],
)
def test_text_that_is_not_a_relayed_state_reads_as_nothing(text: str | None) -> None:
    assert decode_state(text) is None
