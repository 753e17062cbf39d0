"""The `FaceSwapError` tree.

Every error keeps its whole state in `args` in one fixed order, so Celery's JSON result backend
(which rebuilds exceptions as `type(e)(*e.args)`) and our job store hand back an equal error.
`retryable` and `ambiguous` are class facts; only `policy` reads them to decide what happens next.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast


class FaceSwapError(Exception):
    """Root of every error this package raises on purpose."""

    retryable: ClassVar[bool] = False
    ambiguous: ClassVar[bool] = False
    """True when the request may have reached the API and been billed."""
    opens_breaker: ClassVar[bool] = False
    """True when the token, not the job, is at fault: the token's work waits, nothing fails."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        trace_id: str | None = None,
        retry_after_s: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, status, code, trace_id, retry_after_s, detail)

    @property
    def message(self) -> str:
        return cast("str", self.args[0])

    @property
    def status(self) -> int | None:
        return cast("int | None", self.args[1])

    @property
    def code(self) -> str | None:
        return cast("str | None", self.args[2])

    @property
    def trace_id(self) -> str | None:
        return cast("str | None", self.args[3])

    @property
    def retry_after_s(self) -> float | None:
        return cast("float | None", self.args[4])

    @property
    def detail(self) -> str | None:
        """Diagnostic text such as the start of a malformed body."""
        return cast("str | None", self.args[5])

    def __str__(self) -> str:
        parts = [p for p in (str(self.status or ""), self.code or "") if p]
        head = f"[{' '.join(parts)}] " if parts else ""
        tail = f" (trace_id={self.trace_id})" if self.trace_id else ""
        return f"{head}{self.message}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "status": self.status,
            "code": self.code,
            "trace_id": self.trace_id,
            "retry_after_s": self.retry_after_s,
            "detail": self.detail,
        }


class InvalidSwapRequest(FaceSwapError, ValueError):
    """The request was refused before anything was enqueued."""


class DeadlineExceededError(FaceSwapError):
    """The job's deadline passed before its next call could start: it fails without a call."""


class ServiceUnavailableError(FaceSwapError):
    """Redis could not be reached within the retry budget; nothing was enqueued or changed."""

    retryable = True


class APIError(FaceSwapError):
    """Anything that went wrong talking to the Face Swap API."""


class APIConnectionError(APIError):
    """The request never reached the API (refused, DNS, connect timeout): safe to repeat."""

    retryable = True


class AmbiguousCallError(APIError):
    """The request was sent but no answer came back (read timeout, reset): it may be billed."""

    retryable = True
    ambiguous = True


class MalformedResponseError(APIError):
    """A 2xx answer that does not follow the contract; `detail` keeps the start of the body."""

    retryable = True


class APIStatusError(APIError):
    """The API answered with an error status."""


class BadRequestError(APIStatusError):
    """400: the API refused this request; repeating it cannot help."""


class AuthenticationError(APIStatusError):
    """401 (`invalid_token`, `token_expired`, `no_token`): the token, not the job, is at fault."""

    opens_breaker = True


class QuotaExhaustedError(APIStatusError):
    """`used_up`: the account balance is spent."""

    opens_breaker = True


class ServiceDisabledError(APIStatusError):
    """`disabled`: the service is switched off for this account."""

    opens_breaker = True


class PermissionDeniedError(APIStatusError):
    """403 without a known code, such as content moderation."""


class RateLimitedError(APIStatusError):
    """429: the token is over its rate; wait `retry_after_s` when the API names it."""

    retryable = True


class ServerError(APIStatusError):
    """5xx, 408 or 409: a transient failure on the API's side."""

    retryable = True


ERROR_TYPES: dict[str, type[FaceSwapError]] = {
    cls.__name__: cls
    for cls in (
        FaceSwapError,
        InvalidSwapRequest,
        DeadlineExceededError,
        ServiceUnavailableError,
        APIError,
        APIConnectionError,
        AmbiguousCallError,
        MalformedResponseError,
        APIStatusError,
        BadRequestError,
        AuthenticationError,
        QuotaExhaustedError,
        ServiceDisabledError,
        PermissionDeniedError,
        RateLimitedError,
        ServerError,
    )
}


def error_from_dict(data: dict[str, Any]) -> FaceSwapError:
    """Rebuild an error stored by `FaceSwapError.to_dict`; unknown types fall back to the root."""
    cls = ERROR_TYPES.get(str(data.get("type")), FaceSwapError)
    return cls(
        str(data.get("message", "")),
        data.get("status"),
        data.get("code"),
        data.get("trace_id"),
        data.get("retry_after_s"),
        data.get("detail"),
    )
