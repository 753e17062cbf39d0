"""`policy.next_step`: the one place that says what a failed call costs, for every path."""

from __future__ import annotations

import random

import pytest

from faceswap_jobs.errors import (
    AmbiguousCallError,
    AuthenticationError,
    FaceSwapError,
    RateLimitedError,
    ServerError,
)
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest
from faceswap_jobs.policy import Action, RetryConfig, next_step

NOW = 1_800_000_000.0
CONFIG = RetryConfig(max_attempts=3, deadline_s=3600.0, backoff_base_s=1.0, backoff_cap_s=10.0)
REQUEST = SwapRequest.parse(
    {"source_image_url": "https://a/s.png", "target_image_url": "https://a/t.png"}
)


def record(attempts: int, *history: tuple[str, bool]) -> JobRecord:
    return JobRecord(
        id="j",
        state=JobState.RUNNING,
        request=REQUEST,
        queue="q",
        created_at=NOW - 10,
        updated_at=NOW,
        attempts=attempts,
        history=[
            Attempt(number=i + 1, started_at=NOW, outcome=outcome, counted=counted)
            for i, (outcome, counted) in enumerate(history)
        ],
    )


SERVER = ServerError("boom", 500, "api_error")
LIMITED = RateLimitedError("slow down", 429, "too_many_requests", retry_after_s=2.0)
BAD_TOKEN = AuthenticationError("bad token", 401, "invalid_token")
LOST = AmbiguousCallError("no callback", None, "callback_lost")


@pytest.mark.parametrize(
    ("error", "job", "counted_already", "action", "counted"),
    [
        # sync path: the record is read before the call; this call is not in it yet
        (SERVER, record(1, ("retry", True)), False, Action.RETRY, True),
        (SERVER, record(2, ("retry", True), ("retry", True)), False, Action.FAIL, True),
        (LIMITED, record(2, ("retry", True), ("retry", True)), False, Action.DEFER, False),
        (BAD_TOKEN, record(2, ("retry", True), ("retry", True)), False, Action.PAUSE, False),
        # callback path: the accepted submission was counted when the API took it
        (LOST, record(2, ("retry", True), ("accepted", True)), True, Action.RETRY, True),
        (
            LOST,
            record(3, ("retry", True), ("retry", True), ("accepted", True)),
            True,
            Action.FAIL,
            True,
        ),
        # an interrupted call found in the history spends the attempt it did not record
        (LOST, record(2, ("retry", True), ("in_progress", True)), False, Action.FAIL, True),
    ],
)
def test_what_a_failed_call_costs_is_decided_once_for_every_path(
    error: FaceSwapError, job: JobRecord, counted_already: bool, action: Action, counted: bool
) -> None:
    step = next_step(
        error, job, now=NOW, config=CONFIG, rng=random.Random(1), counted_already=counted_already
    )

    assert (step.decision.action, step.counted) == (action, counted)


def test_deferrals_so_far_lengthen_a_429_without_retry_after() -> None:
    bare = RateLimitedError("slow down", 429, "too_many_requests")
    few = next_step(bare, record(0), now=NOW, config=CONFIG, rng=random.Random(7))
    many = next_step(
        bare, record(0, *[("defer", False)] * 6), now=NOW, config=CONFIG, rng=random.Random(7)
    )

    assert few.decision.action is many.decision.action is Action.DEFER
    assert many.decision.delay_s > few.decision.delay_s
