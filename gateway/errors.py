"""The one exception tree of the gateway, and the one place that renders it as HTTP.

::

    GatewayError                      500 server_error
    ├── InvalidRequest                400 invalid_request_error   (names the field in ``param``)
    │   ├── UnknownModel              404 invalid_request_error / model_not_found
    │   ├── UnsafeURL                 a URL the gateway must not fetch (private address: SSRF)
    │   └── UnresolvableHost          a URL whose host name does not resolve (may be transient)
    ├── AuthenticationFailed          401 authentication_error
    │   └── WebhookRejected           a provider webhook whose signature or timestamp fails
    ├── PermissionDenied              403 permission_error
    ├── NotFound                      404 not_found_error
    ├── Conflict                      409 conflict_error        (illegal status transition)
    │   ├── DuplicateIdempotencyKey   the store refused a job: its idempotency key is taken
    │   └── LastAdminKey              the store refused to revoke the last active admin key
    ├── Gone                          410 invalid_request_error (expired result file)
    ├── PayloadTooLarge               413 invalid_request_error
    ├── UnsupportedMediaType          415 invalid_request_error
    ├── IdempotencyKeyReused          422 invalid_request_error (same key, different request)
    ├── RateLimited                   429 rate_limit_error      (carries Retry-After)
    ├── QuotaExceeded                 429 insufficient_quota    (a key's budget would be crossed)
    ├── ServiceUnavailable            503 service_unavailable   (carries Retry-After)
    │   ├── ModelUnavailable          ... no route of the model can run (not retried)
    │   └── StorageUnavailable        ... the result store (directory, bucket) cannot be used
    ├── JobFailedUpstream             502 server_error          (a synchronous job failed)
    ├── JobStillRunning               504 timeout               (a synchronous wait ran out)
    ├── JobCancelledMeanwhile         409 conflict_error        (cancelled during that wait)
    ├── ConfigError                   raised at start-up: bad settings or catalog
    ├── RemoteCallFailed              `backserv run`: the gateway it calls refused or is
    │                                 unreachable (carries the gateway's own message)
    ├── StaleLease                    a write from an owner that lost the job (fencing)
    └── ProviderError                 raised by providers, never seen by HTTP clients
        ├── ProviderInputError        the provider rejected the input: fail now, no retry
        ├── ProviderTransientError    429/5xx/timeouts: retry the same route
        │   └── ProviderResourceExhausted  this machine ran short (open files, memory, disk):
        │                             retried until the job's deadline, no breaker verdict
        ├── ProviderUnavailable       down, out of credit, bad credentials: next route
        ├── ProviderLostRequest       the provider no longer knows the request: resubmit
        │   └── ProviderResultLost    ... and resubmitting would be paid again: fail the job
        ├── ProviderSubmitUncertain   a submit that may or may not have created a (paid)
        │                             request (timeout after sending): never resubmitted
        └── ResultNotStored           the provider's (paid) output could not be written to
                                      result storage by the job's deadline: fail the job,
                                      never run it again

Every class carries its HTTP status, its OpenAI error ``type`` and a default message, so a
handler registered on the root renders them all the same way.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status_code = 500
    error_type = "server_error"
    default_message = "The server had an error while processing your request."

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.param = param
        self.code = code
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"
    default_message = "The request is not valid."


class UnknownModel(InvalidRequest):
    status_code = 404

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' does not exist. GET /v1/models lists the available models.",
            param="model",
            code="model_not_found",
        )


class UnsafeURL(InvalidRequest):
    """A URL whose host is, or resolves to, an address the gateway must not reach
    (loopback, private, link-local, ...) and that the operator did not allow-list."""

    default_message = "The URL points to an address the gateway may not reach."

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code="url_not_allowed")


class UnresolvableHost(InvalidRequest):
    """A URL whose host name did not resolve (in time); at send time, worth a retry."""

    default_message = "The URL's host name does not resolve."

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code="unresolvable_host")


class AuthenticationFailed(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    default_message = "Missing or unknown API key. Send it as 'Authorization: Bearer <key>'."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class WebhookRejected(AuthenticationFailed):
    """A provider's webhook delivery that does not verify: unsigned, forged, altered after
    signing, or signed too long ago (a replay). Nothing is recorded."""

    default_message = "The webhook delivery's signature does not verify."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, code="webhook_signature")

    def headers(self) -> dict[str, str]:
        return {}


class PermissionDenied(GatewayError):
    status_code = 403
    error_type = "permission_error"
    default_message = "This API key is not allowed to do that."


class NotFound(GatewayError):
    status_code = 404
    error_type = "not_found_error"
    default_message = "Not found."


class Conflict(GatewayError):
    status_code = 409
    error_type = "conflict_error"
    default_message = "The request conflicts with the current state of the resource."


class DuplicateIdempotencyKey(Conflict):
    """Raised by a store when a job's (owner, idempotency key) is already taken.

    The job service answers it by replaying the job that holds the key, so clients see it
    only as a replay (or an ``IdempotencyKeyReused``), never as a 409 of its own.
    """

    default_message = "A job with this idempotency key already exists."


class LastAdminKey(Conflict):
    """Raised by a store that was asked to keep an admin key and to revoke the last one."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"Key {key_id} is the last active admin key; create another admin key first "
            "(or revoke it with 'backserv keys revoke').",
            code="last_admin_key",
        )


class Gone(GatewayError):
    status_code = 410
    error_type = "invalid_request_error"
    default_message = "This resource has expired."


class PayloadTooLarge(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    default_message = "The request body is too large."


class UnsupportedMediaType(GatewayError):
    status_code = 415
    error_type = "invalid_request_error"
    default_message = "The request body must be JSON (Content-Type: application/json)."


class IdempotencyKeyReused(GatewayError):
    status_code = 422
    error_type = "invalid_request_error"
    default_message = (
        "This Idempotency-Key was already used with a different request; use a new key for "
        "a new request."
    )

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, param="Idempotency-Key", code="idempotency_key_reused")


class _RetryAfter(GatewayError):
    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float = 1.0,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(self.retry_after + 0.999)))}


class RateLimited(_RetryAfter):
    status_code = 429
    error_type = "rate_limit_error"
    default_message = "Too many requests."


class QuotaExceeded(GatewayError):
    """A submit whose estimated cost would cross its key's budget: OpenAI's envelope for an
    exhausted quota (429, type and code ``insufficient_quota``), so its SDKs treat it as one
    (not retried as a rate limit)."""

    status_code = 429
    error_type = "insufficient_quota"
    default_message = "You exceeded your current quota."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, code="insufficient_quota")


class ServiceUnavailable(_RetryAfter):
    status_code = 503
    error_type = "service_unavailable"
    default_message = "The service is temporarily unavailable."


class _JobOutcome(GatewayError):
    """A synchronous endpoint's job did not end well; the body names the job so the client
    can keep polling it, and the OpenAI SDK is told not to retry (that would pay again)."""

    def __init__(self, message: str, *, job_id: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.job_id = job_id

    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "false", "Location": f"/v1/jobs/{self.job_id}"}

    def body(self) -> dict[str, Any]:
        out = super().body()
        out["error"]["job_id"] = self.job_id
        return out


class JobFailedUpstream(_JobOutcome):
    status_code = 502
    error_type = "server_error"


class JobStillRunning(_JobOutcome):
    status_code = 504
    error_type = "timeout"


class JobCancelledMeanwhile(_JobOutcome):
    status_code = 409
    error_type = "conflict_error"


class ModelUnavailable(ServiceUnavailable):
    """No route of the model can run (missing credentials): retrying will not help soon."""

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "x-should-retry": "false"}


class StorageUnavailable(ServiceUnavailable):
    """The result store cannot be read or written now (a bucket unreachable, a credential
    refused, a directory not writable); the message says which and why."""

    default_message = "The result storage is temporarily unavailable."

    def __init__(self, message: str | None = None, *, retry_after: float = 5.0) -> None:
        super().__init__(message, retry_after=retry_after, code="storage_unavailable")


class ConfigError(GatewayError):
    default_message = "The configuration is not valid."


class RemoteCallFailed(GatewayError):
    """A command's call to a running gateway failed (gateway/commands/client.py)."""

    default_message = "The gateway could not be reached."


class StaleLease(GatewayError):
    default_message = "The job is no longer owned by this worker."


class ProviderError(GatewayError):
    """Base of every error a provider raises; ``code`` is what the job's error shows."""

    default_message = "The provider failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code or self.default_code)
        self.retry_after = retry_after

    default_code = "provider_error"


class ProviderInputError(ProviderError):
    default_message = "The provider rejected the input."
    default_code = "invalid_input"


class ProviderTransientError(ProviderError):
    default_message = "The provider had a temporary failure."
    default_code = "provider_transient_error"


class ProviderResourceExhausted(ProviderTransientError):
    """The gateway's own machine ran short of open files, memory or disk space for a while:
    no verdict on the provider, and no reason to give up on an accepted job."""

    default_message = "The gateway was temporarily short of a system resource."
    default_code = "resource_exhausted"


class ProviderUnavailable(ProviderError):
    default_message = "The provider is unavailable."
    default_code = "provider_unavailable"


class ProviderLostRequest(ProviderError):
    default_message = "The provider no longer knows this request."
    default_code = "provider_lost_request"


class ProviderResultLost(ProviderLostRequest):
    default_message = (
        "The provider no longer has this request or its result (results expire), and running "
        "it again would be paid for twice; submit the job again."
    )
    default_code = "provider_result_lost"


class ResultNotStored(ProviderError):
    """The request succeeded (and was paid for) but its output could not be saved before the
    job's deadline: running it again would pay again, so the job fails with the cause."""

    default_message = (
        "The provider's output could not be written to result storage in time; the gateway "
        "did not run the job again."
    )
    default_code = "result_not_stored"


class ProviderSubmitUncertain(ProviderError):
    default_message = (
        "The provider did not answer the submission in time; it may have accepted it, so the "
        "gateway did not submit it again."
    )
    default_code = "provider_submit_uncertain"
