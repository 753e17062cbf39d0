"""Property-based: whatever an API answer holds (status, headers, body), the client parses it into
a valid result or raises one of our `FaceSwapError`s, and an error keeps bounded text only (a
900-KB message costs at most `MAX_MESSAGE_CHARS` of Redis per job)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from faceswap_jobs.client import (
    DETAIL_CHARS,
    MAX_CODE_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_TRACE_ID_CHARS,
    parse_accepted,
    parse_result,
)
from faceswap_jobs.errors import FaceSwapError, MalformedResponseError
from faceswap_jobs.models import MAX_TASK_ID_CHARS, MAX_URL_LENGTH, SwapResult, check_url
from tests.support.hostile import fuzz

FUZZ = fuzz(200)
NOW = 1_700_000_000.0

hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "[/]",
            "[link=https://evil.example]x[/link]",
            "\x1b[2J",
            "\ud800",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "https://img.example.com/r.png",
            "https://u:p@img.example.com/r.png",
        ]
    ),
    st.integers(0, 3).map(lambda n: "m" * (900_000 if n == 3 else 3000 * n)),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = ["success", "image_url", "image_width", "image_height", "image_size", "task_id",
          "trace_id", "error", "message", "detail", "code"]  # fmt: skip
envelopes = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)),
    st.one_of(values, st.dictionaries(st.sampled_from(["code", "message"]), values, max_size=2)),
    max_size=6,
)


def _encoded(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


successes = st.fixed_dictionaries(
    {"success": st.one_of(st.just(True), values), "image_url": hostile_text},
    optional={name: values for name in ("image_width", "image_height", "image_size", "task_id")},
)
bodies = st.one_of(
    successes.map(_encoded),
    envelopes.map(_encoded),
    values.map(_encoded),
    st.binary(max_size=300),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.just(b'{"success": true, "image_url": "https://img.example.com/r.png"}'),
)
headers = st.dictionaries(
    st.sampled_from(["retry-after", "Retry-After", "retry-after-ms", "content-type", "x-other"]),
    st.one_of(st.text(max_size=30), st.sampled_from(["1e999", "nan", "-1", "5", "0.5",
              "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 99 Oct 99999 07:28:00 GMT"])),
    max_size=3,
)  # fmt: skip
statuses = st.one_of(
    st.just(200), st.sampled_from([201, 400, 401, 403, 408, 409, 429, 500, 503]),
    st.integers(100, 599),
)  # fmt: skip


def _check_error(exc: FaceSwapError) -> None:
    assert len(exc.message) <= MAX_MESSAGE_CHARS + 3
    assert exc.code is None or len(exc.code) <= MAX_CODE_CHARS + 3
    assert exc.trace_id is None or len(exc.trace_id) <= MAX_TRACE_ID_CHARS + 3
    assert exc.detail is None or len(exc.detail) <= DETAIL_CHARS
    assert exc.retry_after_s is None or 0 <= exc.retry_after_s < float("inf")
    json.dumps(exc.to_dict(), allow_nan=False)  # storable as the job's last_error


@FUZZ
@given(status=statuses, head=headers, body=bodies)
def test_a_sync_answer_is_a_valid_result_or_one_of_our_errors(
    status: int, head: dict[str, str], body: bytes
) -> None:
    try:
        result = parse_result(status, CaseInsensitiveDict(head), body, NOW)
    except FaceSwapError as exc:
        event(type(exc).__name__)
        _check_error(exc)
        return
    event("result")
    assert isinstance(result, SwapResult)
    assert check_url(result.image_url, "image_url") and len(result.image_url) <= MAX_URL_LENGTH
    assert SwapResult.model_validate_json(result.model_dump_json()) == result


@FUZZ
@given(status=statuses, head=headers, body=bodies)
def test_a_callback_mode_answer_is_a_task_id_or_one_of_our_errors(
    status: int, head: dict[str, str], body: bytes
) -> None:
    try:
        task_id = parse_accepted(status, CaseInsensitiveDict(head), body, NOW)
    except FaceSwapError as exc:
        _check_error(exc)
        return
    assert isinstance(task_id, str) and task_id
    assert len(task_id) <= MAX_TASK_ID_CHARS and task_id.isprintable()


@pytest.mark.parametrize(
    "answer",
    [
        {"trace_id": "m" * 3000},
        {"task_id": "t" * 3000, "trace_id": "m" * 3000},
        {"task_id": "a\x1b[2Jb"},
    ],
)
def test_a_callback_mode_answer_without_a_usable_task_id_is_bounded(answer: dict[str, str]) -> None:
    """Found by the property above: a 200 without a task id kept a 3,000-character trace id."""
    with pytest.raises(MalformedResponseError) as caught:
        parse_accepted(200, CaseInsensitiveDict(), json.dumps(answer).encode(), NOW)
    _check_error(caught.value)


def test_a_900_kb_error_message_is_cut_to_the_bound() -> None:
    body = json.dumps({"error": {"code": "c" * 5000, "message": "m" * 900_000},
                       "trace_id": "t" * 5000}).encode()  # fmt: skip
    try:
        parse_result(500, CaseInsensitiveDict(), body, NOW)
    except FaceSwapError as exc:
        _check_error(exc)
        assert exc.message.startswith("m" * 100) and exc.message.endswith("...")
    else:
        raise AssertionError("a 500 must raise")
