"""One HTTP call to the Face Swap API, and the mapping of every answer to a result or a typed error.

`interpret` is pure (status, headers, body in; result out or error raised) so the whole error
taxonomy is unit-tested without a socket; `FaceSwapClient` only adds the transport and tells
"never sent" (safe to repeat) from "sent, no answer" (may be billed) apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
import urllib3

from faceswap_jobs.call_deadline import CallDeadline, DeadlineAdapter, call_deadline
from faceswap_jobs.errors import (
    AmbiguousCallError,
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    FaceSwapError,
    MalformedResponseError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
    ServiceDisabledError,
)
from faceswap_jobs.models import MAX_TASK_ID_CHARS, SwapRequest, SwapResult
from faceswap_jobs.policy import parse_retry_after

MAX_BODY_BYTES = 1 << 20
"""Bytes of an answer we read at most; the contract's bodies are a few hundred bytes."""
DETAIL_CHARS = 500
"""Characters of an unexpected body kept on the error for diagnosis."""
USER_AGENT = "faceswap-jobs/0.1"

_CODE_ERRORS: dict[str, type[APIStatusError]] = {
    "invalid_token": AuthenticationError,
    "token_expired": AuthenticationError,
    "no_token": AuthenticationError,
    "used_up": QuotaExhaustedError,
    "disabled": ServiceDisabledError,
    "too_many_requests": RateLimitedError,
    "bad_request": BadRequestError,
    "token_mismatched": BadRequestError,
    "api_not_implemented": BadRequestError,
}


def _error_class(status: int, code: str | None) -> type[APIStatusError]:
    if status == 429:
        return RateLimitedError
    if code in _CODE_ERRORS:
        return _CODE_ERRORS[code]
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status in (408, 409) or status >= 500:
        return ServerError
    if status == 400:
        return BadRequestError
    return APIStatusError


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _snippet(body: bytes) -> str:
    return body[:DETAIL_CHARS].decode("utf-8", errors="replace")


MAX_MESSAGE_CHARS = 2000
"""An API's (or a callback's) error message kept on the error: it is stored with the job, in
the dead-letter queue and in exports, so a 900-KB message must not cost megabytes of Redis."""
MAX_CODE_CHARS = 64
MAX_TRACE_ID_CHARS = 128


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _text(value: Any, limit: int) -> str | None:
    """A string or integer field of an answer as bounded text; None for anything else (a nested
    object's text could be unbounded, or too deep to print)."""
    if isinstance(value, str):
        return _bounded(value, limit)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() < 128:
        return str(value)
    return None


def _error_fields(data: Any, body: bytes) -> tuple[str | None, str, str | None]:
    """(code, message, trace_id) from an envelope whose `error` may be an object, text or absent;
    each bounded (`MAX_CODE_CHARS`, `MAX_MESSAGE_CHARS`, `MAX_TRACE_ID_CHARS`)."""
    if not isinstance(data, dict):
        text = _snippet(body).strip()
        return None, text[:200] or "empty body", None
    trace_id = _text(data.get("trace_id"), MAX_TRACE_ID_CHARS)
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (
            _bounded(code, MAX_CODE_CHARS) if isinstance(code, str) else None,
            "no message" if message is None else _message(message),
            trace_id,
        )
    if isinstance(error, str):
        return _bounded(error, MAX_CODE_CHARS), _bounded(error, MAX_MESSAGE_CHARS), trace_id
    message = data.get("message") or data.get("detail")
    return None, _message(message) if message else "no error detail", trace_id


def _message(value: Any) -> str:
    text = _text(value, MAX_MESSAGE_CHARS)
    return text if text is not None else f"(a {type(value).__name__} where a message belongs)"


def status_error(status: int, headers: Mapping[str, str], body: bytes, now: float) -> APIError:
    """The typed error for an answer that is not a success."""
    code, message, trace_id = _error_fields(_decode(body), body)
    cls = _error_class(status, code)
    retry_after = parse_retry_after(headers, now) if cls.retryable else None
    return cls(message, status, code, trace_id, retry_after, None)


def callback_error(payload: dict[str, Any]) -> APIError:
    """The typed error a `success: false` callback body means; unknown codes are transient."""
    code, message, trace_id = _error_fields(payload, b"")
    cls = _CODE_ERRORS.get(code or "", ServerError)
    return cls(message, None, code, trace_id, None, None)


def interpret(status: int, headers: Mapping[str, str], body: bytes, now: float) -> dict[str, Any]:
    """The success body as a dict, or raise the typed error the answer means."""
    if not 200 <= status < 300:
        raise status_error(status, headers, body, now)
    data = _decode(body)
    if isinstance(data, dict) and data.get("success") is False:
        code, message, trace_id = _error_fields(data, body)
        cls = _CODE_ERRORS.get(code or "", MalformedResponseError)
        raise cls(message, status, code, trace_id, None, _snippet(body))
    if not isinstance(data, dict):
        raise MalformedResponseError(
            "answer is not a JSON object", status, None, None, None, _snippet(body)
        )
    return data


def parse_result(status: int, headers: Mapping[str, str], body: bytes, now: float) -> SwapResult:
    """A synchronous answer: it must carry an `image_url`."""
    data = interpret(status, headers, body, now)
    image_url = data.get("image_url")
    if not isinstance(image_url, str) or not image_url:
        raise MalformedResponseError(
            "answer has no image_url", status, None, _trace(data), None, _snippet(body)
        )
    try:
        return SwapResult.model_validate(data)
    except ValueError:
        raise MalformedResponseError(
            "answer fields have unexpected types", status, None, _trace(data), None, _snippet(body)
        ) from None


def parse_accepted(status: int, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """A callback-mode answer: it must carry the `task_id` the callback will name."""
    data = interpret(status, headers, body, now)
    task_id = data.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise MalformedResponseError(
            "answer has no task_id", status, None, _trace(data), None, _snippet(body)
        )
    if len(task_id) > MAX_TASK_ID_CHARS or not task_id.isprintable():
        raise MalformedResponseError(
            f"answer's task_id is not a printable id of at most {MAX_TASK_ID_CHARS} characters",
            status, None, _trace(data), None, _snippet(body),
        )  # fmt: skip
    return task_id


def _trace(data: dict[str, Any]) -> str | None:
    return _text(data.get("trace_id"), MAX_TRACE_ID_CHARS)


class FaceSwapClient:
    """Pooled HTTP client, safe to share between the threads of one worker process."""

    def __init__(
        self,
        swap_url: str,
        token: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        pool_size: int = 10,
    ) -> None:
        self._url = swap_url
        self._token = token
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._session = requests.Session()
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"FaceSwapClient(url={self._url!r})"

    def close(self) -> None:
        self._session.close()

    def swap(self, request: SwapRequest, extra: Mapping[str, Any] | None = None) -> SwapResult:
        """Call the API synchronously: the answer carries the swapped image."""
        status, headers, body = self._post({**request.body(), **(extra or {})})
        return parse_result(status, headers, body, time.time())

    def submit(self, request: SwapRequest, callback_url: str) -> str:
        """Call the API in callback mode: the answer is the vendor's task id."""
        status, headers, body = self._post({**request.body(), "callback_url": callback_url})
        return parse_accepted(status, headers, body, time.time())

    def _post(self, payload: dict[str, Any]) -> tuple[int, Mapping[str, str], bytes]:
        headers = {
            "accept": "application/json",
            "authorization": f"Bearer {self._token}",
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        with call_deadline(self._timeouts[1]) as deadline:
            try:
                response = self._session.post(
                    self._url,
                    data=json.dumps(payload),
                    headers=headers,
                    timeout=self._timeouts,
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    body = _read_capped(response)
            except (FaceSwapError, requests.exceptions.RequestException) as exc:
                raise _cut_at(deadline) if deadline.expired else _transport_error(exc) from None
        if deadline.expired:
            raise _cut_at(deadline)
        return response.status_code, response.headers, body


def _cut_at(deadline: CallDeadline) -> AmbiguousCallError:
    return AmbiguousCallError(
        f"no complete answer within {deadline.seconds:g} s; the call may have been billed",
        None,
        "read_timeout",
    )


def _transport_error(exc: Exception) -> FaceSwapError:
    """What a failed request means for billing: never sent (safe to repeat) or maybe billed."""
    if isinstance(exc, FaceSwapError):
        return exc
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return APIConnectionError("connect timed out", None, "connect_timeout")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return AmbiguousCallError(
            "no answer before the read timeout; the call may have been billed", None, "read_timeout"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _never_sent(exc):
            return APIConnectionError(f"could not connect: {_reason(exc)}", None, "connect_failed")
        return AmbiguousCallError(
            f"connection broken after the request was sent: {_reason(exc)}",
            None,
            "connection_reset",
        )
    return APIError(f"request failed: {type(exc).__name__}", None, "client_error")


def _read_capped(response: requests.Response) -> bytes:
    """The body, at most `MAX_BODY_BYTES` (the call's deadline bounds how long it may take)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise MalformedResponseError(
                    f"answer is larger than {MAX_BODY_BYTES} bytes",
                    response.status_code,
                    None,
                    None,
                    None,
                    _snippet(b"".join(chunks)),
                )
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
        raise AmbiguousCallError(
            "answer cut off mid-body; the call may have been billed", None, "connection_reset"
        ) from None
    return b"".join(chunks)


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the failure happened while connecting, before any byte of the request left."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.NewConnectionError | ConnectionRefusedError)


def _reason(exc: Exception) -> str:
    """A short cause without URLs' query strings or headers (a token could hide in either)."""
    reason = exc.args[0] if exc.args else exc
    if isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    return type(reason).__name__
