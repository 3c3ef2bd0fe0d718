"""How azure-core exceptions read for the retry policy, shared by the Search and Content Safety backends."""

from __future__ import annotations

from azure.core.exceptions import (
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from personalization_assets.backends.retry import Failure, status_failure


def classify_azure_error(exc: BaseException) -> Failure | None:
    """Retryable: 408/429/5xx (with the server's `Retry-After`), timeouts, dropped connections and
    2xx answers whose body is not valid JSON. Anything else (400, 401, 404...) is final."""
    if isinstance(exc, DecodeError):
        return Failure(True, "malformed")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return status_failure(exc.status_code, exc.response.headers if exc.response is not None else None)
    if isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError):
        return Failure(True, "timeout")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return Failure(True, "connection")
    return None
