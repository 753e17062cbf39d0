"""Every answer the API can give maps to one result or one typed error (pure, no sockets)."""

from __future__ import annotations

import json

import pytest
from requests.structures import CaseInsensitiveDict

from faceswap_jobs.client import MAX_BODY_BYTES, parse_accepted, parse_result
from faceswap_jobs.errors import (
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

NOW = 1_800_000_000.0
TRACE = "2cf86e86-22a4-46e1-ac2f-032c0f2a4e89"


def envelope(code: str, message: str = "msg") -> bytes:
    return json.dumps(
        {"success": False, "error": {"code": code, "message": message}, "trace_id": TRACE}
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "retryable"),
    [
        (400, envelope("token_mismatched"), BadRequestError, "token_mismatched", False),
        (400, envelope("api_not_implemented"), BadRequestError, "api_not_implemented", False),
        (400, envelope("bad_request"), BadRequestError, "bad_request", False),
        (401, envelope("invalid_token"), AuthenticationError, "invalid_token", False),
        (401, envelope("token_expired"), AuthenticationError, "token_expired", False),
        (401, envelope("no_token"), AuthenticationError, "no_token", False),
        (403, envelope("used_up"), QuotaExhaustedError, "used_up", False),
        (402, envelope("used_up"), QuotaExhaustedError, "used_up", False),
        (403, envelope("disabled"), ServiceDisabledError, "disabled", False),
        (403, envelope("content_moderated"), PermissionDeniedError, "content_moderated", False),
        (429, envelope("too_many_requests"), RateLimitedError, "too_many_requests", True),
        (500, envelope("api_error", "fetch failed"), ServerError, "api_error", True),
        (502, envelope("api_error"), ServerError, "api_error", True),
        (408, envelope("timeout"), ServerError, "timeout", True),
        (409, envelope("conflict"), ServerError, "conflict", True),
        (404, envelope("not_found"), APIStatusError, "not_found", False),
    ],
)
def test_status_answers_map_to_typed_errors(
    status: int, body: bytes, cls: type[FaceSwapError], code: str, retryable: bool
) -> None:
    with pytest.raises(cls) as caught:
        parse_result(status, CaseInsensitiveDict(), body, NOW)
    error = caught.value
    assert type(error) is cls
    assert (error.status, error.code, error.trace_id) == (status, code, TRACE)
    assert error.retryable is retryable


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b'{"success": false, "error": "used_up", "trace_id": "t"}', "used_up", "used_up"),
        (b'{"success": false, "error": null, "trace_id": "t"}', None, "no error detail"),
        (b'{"success": false, "trace_id": "t"}', None, "no error detail"),
        (b'{"error": {"code": 5, "message": null}}', None, "no message"),
        (b"<html><body>Bad Gateway</body></html>", None, "<html><body>Bad Gateway</body></html>"),
        (b"", None, "empty body"),
        (b"\xff\xfe\x00garbage", None, "\ufffd\ufffd\x00garbage"),
        (b"[1, 2, 3]", None, "[1, 2, 3]"),
    ],
)
def test_lenient_error_bodies(body: bytes, code: str | None, message: str) -> None:
    with pytest.raises(FaceSwapError) as caught:
        parse_result(500, CaseInsensitiveDict(), body, NOW)
    assert caught.value.code == code
    assert caught.value.message == message
    assert caught.value.status == 500


def test_429_reads_retry_after_seconds_and_dates() -> None:
    headers = CaseInsensitiveDict({"Retry-After": "12"})
    with pytest.raises(RateLimitedError) as caught:
        parse_result(429, headers, envelope("too_many_requests"), NOW)
    assert caught.value.retry_after_s == 12.0
    with pytest.raises(RateLimitedError) as caught:
        parse_result(429, CaseInsensitiveDict(), b"", NOW)
    assert caught.value.retry_after_s is None


def test_success_body_parses_into_a_result() -> None:
    body = json.dumps(
        {
            "image_url": "https://cdn.example/face/x.png",
            "image_width": 2008,
            "image_height": 1942,
            "image_size": 4006213,
            "task_id": "4b13bdeb",
            "extra_vendor_field": 1,
        }
    ).encode()
    result = parse_result(200, CaseInsensitiveDict(), body, NOW)
    assert result.image_url == "https://cdn.example/face/x.png"
    assert (result.image_width, result.image_height, result.image_size) == (2008, 1942, 4006213)
    assert result.task_id == "4b13bdeb"


@pytest.mark.parametrize(
    "body",
    [
        b'{"task_id": "x"}',
        b'{"image_url": ""}',
        b'{"image_url": 42}',
        b'{"image_url": "u", "image_width": "wide"}',
        b"<html>ok</html>",
        b"",
        b"null",
    ],
)
def test_malformed_success_is_retryable_and_keeps_the_body(body: bytes) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_result(200, CaseInsensitiveDict(), body, NOW)
    assert caught.value.retryable
    assert caught.value.detail == body.decode()


def test_200_with_success_false_is_the_error_it_names() -> None:
    with pytest.raises(AuthenticationError):
        parse_result(200, CaseInsensitiveDict(), envelope("invalid_token"), NOW)
    with pytest.raises(MalformedResponseError):
        parse_result(200, CaseInsensitiveDict(), envelope("something_new"), NOW)


def test_callback_mode_answer_needs_a_task_id() -> None:
    assert parse_accepted(200, CaseInsensitiveDict(), b'{"task_id": "9cba"}', NOW) == "9cba"
    with pytest.raises(MalformedResponseError):
        parse_accepted(200, CaseInsensitiveDict(), b"{}", NOW)


def test_detail_is_truncated() -> None:
    body = b"x" * (MAX_BODY_BYTES // 2)
    with pytest.raises(MalformedResponseError) as caught:
        parse_result(200, CaseInsensitiveDict(), body, NOW)
    assert caught.value.detail is not None
    assert len(caught.value.detail) == 500


@pytest.mark.parametrize(
    "image_url",
    ["javascript:alert(1)", "file:///etc/passwd", "https://cdn.example.com/" + "a" * 3000,
     "https://user:pw@cdn.example.com/x.png", "//cdn.example.com/x.png"],
)  # fmt: skip
def test_a_success_whose_image_url_is_not_a_plain_http_url_is_malformed(image_url: str) -> None:
    body = json.dumps({"success": True, "image_url": image_url}).encode()
    with pytest.raises(MalformedResponseError):
        parse_result(200, {}, body, 0.0)
