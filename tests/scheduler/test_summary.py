"""summarise: a failed job's error names every route of its chain, primary first."""

from __future__ import annotations

from gateway.errors import (
    ProviderInputError,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
)
from gateway.jobs import Attempt, Outcome
from gateway.scheduler.summary import Skipped, summarise
from providers.base import RouteSpec

FAL = RouteSpec("fal", "fal-ai/flux/dev")
REPLICATE = RouteSpec("replicate", "black-forest-labs/flux-dev")
LOCAL = RouteSpec("local", "flux")


def failed(route: RouteSpec, index: int, error: Exception, n: int = 1) -> Attempt:
    attempt = Attempt(n=n, route=route.name, route_index=index, provider=route.provider)
    code = getattr(error, "code", None)
    attempt.close(Outcome.FAILED, {"code": code, "message": getattr(error, "message", "")})
    return attempt


def test_a_route_paused_by_its_circuit_is_named_as_skipped_with_why() -> None:
    down = ProviderTransientError("fal answered HTTP 503 to the submit: busy")
    paused = ProviderUnavailable("paused after repeated failures", code="circuit_open")

    error = summarise(
        [FAL, REPLICATE],
        [failed(FAL, 0, down)],
        {1: Skipped(paused, "circuit open")},
        paused,
        fatal=False,
        timed_out=False,
    )

    assert error["code"] == "provider_transient_error"
    fallback = error["message"][error["message"].index(REPLICATE.name) :]
    assert "skipped" in fallback and "circuit open" in fallback
    assert "HTTP 503" in error["message"][: error["message"].index(REPLICATE.name)]


def test_an_uncertain_submit_on_a_fallback_keeps_its_code_and_leaves_out_routes_not_reached() -> (
    None
):
    down = ProviderTransientError("cannot connect to queue.fal.run (ConnectError)")
    uncertain = ProviderSubmitUncertain("the submit may have been accepted")

    error = summarise(
        [FAL, REPLICATE, LOCAL],
        [failed(FAL, 0, down), failed(REPLICATE, 1, uncertain, n=2)],
        {},
        uncertain,
        fatal=True,
        timed_out=False,
    )

    assert error["code"] == "provider_submit_uncertain"  # what the client must know
    message = error["message"]
    assert message.index("queue.fal.run") < message.index("may have been accepted")
    assert LOCAL.name not in message and "Every route failed" not in message


def test_an_input_error_is_the_providers_own_message() -> None:
    bad = ProviderInputError("fal rejected the input: 'prompt': too long", param="prompt")

    error = summarise([FAL, REPLICATE], [failed(FAL, 0, bad)], {}, bad, fatal=True, timed_out=False)

    assert error == {"code": "invalid_input", "message": bad.message}


def test_attempts_of_a_chain_the_job_was_rerouted_from_are_not_counted() -> None:
    old = RouteSpec("sandbox", "image")
    earlier = failed(old, 0, ProviderUnavailable("the old route failed"))
    down = ProviderUnavailable("fal has no such app (fal-ai/nope).")

    error = summarise(
        [FAL], [earlier, failed(FAL, 0, down, n=2)], {}, down, fatal=False, timed_out=False
    )

    assert "old route" not in error["message"] and "no such app" in error["message"]
    assert "tries" not in error["message"]
