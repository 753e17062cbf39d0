"""The retry policy is pure: every decision is a table row, with the clock and dice passed in."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from requests.structures import CaseInsensitiveDict

from faceswap_jobs.errors import (
    AmbiguousCallError,
    APIConnectionError,
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
from faceswap_jobs.policy import Action, RetryConfig, backoff_s, decide, parse_retry_after

NOW = 1_800_000_000.0
CONFIG = RetryConfig(
    max_attempts=5,
    deadline_s=3600.0,
    backoff_base_s=2.0,
    backoff_cap_s=60.0,
    retry_after_cap_s=120.0,
    max_countdown_s=300.0,
)


class MaxRandom(random.Random):
    """Full jitter at its top: the delay equals the exponential ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _decide(error: FaceSwapError, attempts: int = 1, deferrals: int = 0, started: float = NOW):
    return decide(
        error,
        attempts=attempts,
        deferrals=deferrals,
        started_at=started,
        now=NOW,
        config=CONFIG,
        rng=MaxRandom(),
    )


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("bad", 400, "bad_request"),
        BadRequestError("mismatch", 400, "token_mismatched"),
        BadRequestError("nope", 400, "api_not_implemented"),
        PermissionDeniedError("moderated", 403, None),
    ],
)
def test_permanent_errors_fail_at_once(error: FaceSwapError) -> None:
    decision = _decide(error, attempts=1)
    assert decision.action is Action.FAIL
    assert decision.reason.startswith("permanent error")


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("bad token", 401, "invalid_token"),
        AuthenticationError("expired", 401, "token_expired"),
        AuthenticationError("none", 401, "no_token"),
        QuotaExhaustedError("used up", 403, "used_up"),
        ServiceDisabledError("disabled", 403, "disabled"),
    ],
)
def test_token_failures_pause_the_job_whatever_its_budget(error: FaceSwapError) -> None:
    for attempts in (1, CONFIG.max_attempts):
        decision = _decide(error, attempts=attempts)
        assert decision.action is Action.PAUSE
        assert decision.reason == f"token unusable: {error.code}"


@pytest.mark.parametrize(
    ("error", "attempts", "expected_delay"),
    [
        (ServerError("boom", 500, "api_error"), 1, 2.0),
        (ServerError("boom", 502, None), 2, 4.0),
        (APIConnectionError("refused", None, "connect_failed"), 3, 8.0),
        (AmbiguousCallError("timeout", None, "read_timeout"), 4, 16.0),
        (MalformedResponseError("no image_url", 200, None), 1, 2.0),
        (ServerError("busy", 503, None, None, 30.0), 1, 30.0),
    ],
)
def test_retryable_errors_back_off_exponentially(
    error: FaceSwapError, attempts: int, expected_delay: float
) -> None:
    decision = _decide(error, attempts=attempts)
    assert decision.action is Action.RETRY
    assert decision.delay_s == pytest.approx(expected_delay)


def test_backoff_is_capped_and_jittered_from_zero() -> None:
    assert backoff_s(30, 2.0, 60.0, MaxRandom()) == 60.0
    rng = random.Random(1)
    delays = [backoff_s(3, 2.0, 60.0, rng) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert min(delays) < 1.0 < 7.0 < max(delays)


def test_budget_spent_fails_with_the_count() -> None:
    decision = _decide(ServerError("boom", 500, "api_error"), attempts=5)
    assert decision.action is Action.FAIL
    assert decision.reason == "gave up after 5 attempts"


def test_deadline_stops_retries_even_with_budget_left() -> None:
    decision = _decide(ServerError("boom", 500), attempts=1, started=NOW - 3599.0)
    assert decision.action is Action.FAIL
    assert "deadline" in decision.reason


@pytest.mark.parametrize(
    ("retry_after", "deferrals", "expected"),
    [(5.0, 1, 5.0), (1000.0, 1, 120.0), (None, 1, 2.0 + 2.0), (None, 3, 2.0 + 8.0)],
)
def test_rate_limits_defer_without_spending_attempts(
    retry_after: float | None, deferrals: int, expected: float
) -> None:
    error = RateLimitedError("slow down", 429, "too_many_requests", None, retry_after)
    decision = _decide(error, attempts=CONFIG.max_attempts, deferrals=deferrals)
    assert decision.action is Action.DEFER
    assert decision.delay_s == pytest.approx(expected)


def test_no_delay_exceeds_the_countdown_cap() -> None:
    config = RetryConfig(backoff_cap_s=10_000, retry_after_cap_s=10_000, max_countdown_s=42.0)
    error = RateLimitedError("slow down", 429, None, None, 5000.0)
    decision = decide(
        error, attempts=1, deferrals=1, started_at=NOW, now=NOW, config=config, rng=MaxRandom()
    )
    assert decision.delay_s == 42.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "junk", "Retry-After": "2"}, 2.0),
        (
            {"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)},
            30.0,
        ),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)}, 0.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(CaseInsensitiveDict(headers), NOW) == expected
