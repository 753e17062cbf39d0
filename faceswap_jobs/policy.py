"""Pure retry decisions: given an error and a job's counters, what happens next and when.

No I/O and no clock of its own: `now` and `rng` come in as arguments, so every branch is a
table-driven unit test that never sleeps. `next_step` is the one entry point the sync task, the
callback settlement and the reconciler share, so the same answer gets the same action on every
path; `decide` is the rule table under it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

from faceswap_jobs.config import Settings
from faceswap_jobs.errors import FaceSwapError, RateLimitedError
from faceswap_jobs.models import JobRecord


class Action(StrEnum):
    RETRY = "retry"
    """Call again after `delay_s`; the failed call spent one attempt."""
    DEFER = "defer"
    """Call again after `delay_s`; the API asked us to slow down, no attempt is spent."""
    PAUSE = "pause"
    """The token is unusable (auth, balance): hold the job until the breaker closes."""
    FAIL = "fail"


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 8
    deadline_s: float = 3600.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 120.0
    retry_after_cap_s: float = 300.0
    max_countdown_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryConfig:
        return cls(
            max_attempts=settings.max_attempts,
            deadline_s=settings.deadline_s,
            backoff_base_s=settings.backoff_base_s,
            backoff_cap_s=settings.backoff_cap_s,
            retry_after_cap_s=settings.retry_after_cap_s,
            max_countdown_s=settings.max_countdown_s,
        )


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    reason: str = ""


def backoff_s(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(failures-1))].

    Full jitter spreads a crowd of jobs that failed together, so they do not return together.
    """
    ceiling = min(cap_s, base_s * 2 ** max(0, min(failures - 1, 62)))
    return rng.uniform(0.0, ceiling)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date.

    `headers` must be case-insensitive (as `requests` gives them). Garbage and negative values
    mean "not said", never an error: the header is advice from a server we do not control.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = -1.0
        if 0.0 <= value < float("inf"):
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            value = parsedate_to_datetime(raw).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return max(0.0, value)
    return value if 0.0 <= value < float("inf") else None


def decide(
    error: FaceSwapError,
    *,
    attempts: int,
    deferrals: int,
    started_at: float,
    now: float,
    config: RetryConfig,
    rng: random.Random,
) -> Decision:
    """What to do after `error`.

    `attempts` counts the calls that spent budget so far, including this one if it did;
    `deferrals` counts rate-limit answers so far, including this one if it was one.
    """
    if error.opens_breaker:
        return Decision(
            Action.PAUSE, reason=f"token unusable: {error.code or type(error).__name__}"
        )
    if not error.retryable:
        return Decision(
            Action.FAIL, reason=f"permanent error: {error.code or type(error).__name__}"
        )
    if isinstance(error, RateLimitedError):
        action = Action.DEFER
        if error.retry_after_s is not None:
            delay = min(error.retry_after_s, config.retry_after_cap_s)
        else:
            delay = config.backoff_base_s + backoff_s(
                deferrals, config.backoff_base_s, config.retry_after_cap_s, rng
            )
    else:
        if attempts >= config.max_attempts:
            return Decision(Action.FAIL, reason=f"gave up after {attempts} attempts")
        action = Action.RETRY
        delay = backoff_s(attempts, config.backoff_base_s, config.backoff_cap_s, rng)
        if error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, config.retry_after_cap_s))
    delay = min(delay, config.max_countdown_s)
    if now + delay > started_at + config.deadline_s:
        return Decision(Action.FAIL, reason=f"deadline of {config.deadline_s:g} s would be passed")
    return Decision(
        action, delay_s=delay, reason=f"retryable: {error.code or type(error).__name__}"
    )


def deadline_passed(record: JobRecord, *, now: float, config: RetryConfig) -> bool:
    """No call may start after this: the job's deadline counts from submission (or its last
    `retry-failed`), moved on by time paused, the pause it may still be in included."""
    pausing_s = max(0.0, now - record.paused_at) if record.paused_at is not None else 0.0
    return now >= record.deadline_start + pausing_s + config.deadline_s


@dataclass(frozen=True)
class NextStep:
    decision: Decision
    counted: bool
    """Whether the failed call spends retry budget (a 429 or an unusable token does not)."""


def spends_budget(error: FaceSwapError) -> bool:
    return not (isinstance(error, RateLimitedError) or error.opens_breaker)


def next_step(
    error: FaceSwapError,
    record: JobRecord,
    *,
    now: float,
    config: RetryConfig,
    rng: random.Random,
    counted_already: bool = False,
) -> NextStep:
    """What happens to `record`'s job after a call of it failed with `error`.

    `record.history` holds the job's earlier calls (and may hold this one); `counted_already`
    says this call is already in `record.attempts` (a callback-mode submission is counted when
    the API accepts it)."""
    counted = spends_budget(error)
    deferrals = sum(1 for a in record.history if not a.counted) + (0 if counted else 1)
    decision = decide(
        error,
        attempts=record.attempts + (1 if counted and not counted_already else 0),
        deferrals=deferrals,
        started_at=record.deadline_start,
        now=now,
        config=config,
        rng=rng,
    )
    return NextStep(decision, counted)
