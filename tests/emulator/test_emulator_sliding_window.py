"""The emulator's strict sliding-window rate limit, as a unit on a fake clock (no sleeps), and
its selection next to the token bucket by `rate_window`.

Times are multiples of 1/8 s, so every difference below is exact in binary floating point.
"""

import pytest

from faceswap_jobs.emulator.limiter import PerTokenLimiter
from faceswap_jobs.emulator.sliding_window import SlidingWindowLimiter, calls_per_window


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now_s: float = 100.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_r_calls_in_one_instant_then_the_next_waits_for_the_oldest() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock)

    admitted = [limiter.acquire("a", 3) for _ in range(3)]
    refused = limiter.acquire("a", 3)
    clock.now_s = 100.25
    refused_later = limiter.acquire("a", 3)

    assert admitted == [0.0, 0.0, 0.0]
    assert refused == 1.0
    assert refused_later == 0.75


def test_admitted_again_exactly_when_the_oldest_leaves_the_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock)
    for now_s in (100.0, 100.25, 100.5):
        clock.now_s = now_s
        assert limiter.acquire("a", 3) == 0.0

    clock.now_s = 100.875
    assert limiter.acquire("a", 3) == 0.125  # 100.0 leaves (t - 1, t] at t = 101.0
    clock.now_s = 101.0
    assert limiter.acquire("a", 3) == 0.0
    assert limiter.acquire("a", 3) == 0.25  # now 100.25 is the oldest of the window
    clock.now_s = 101.25
    assert limiter.acquire("a", 3) == 0.0


def test_refused_calls_are_not_recorded() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock)
    assert limiter.acquire("a", 2) == 0.0
    clock.now_s = 100.5
    assert limiter.acquire("a", 2) == 0.0

    for now_s in (100.625, 100.75, 100.875):
        clock.now_s = now_s
        assert limiter.acquire("a", 2) == 101.0 - now_s
    clock.now_s = 101.0
    first_free = limiter.acquire("a", 2)
    refused = limiter.acquire("a", 2)

    assert first_free == 0.0
    assert refused == 0.5  # the window holds 100.5 and 101.0, none of the refused calls


def test_keys_are_independent_and_clear_forgets_them() -> None:
    limiter = SlidingWindowLimiter(FakeClock())

    assert limiter.acquire("a", 1) == 0.0
    assert limiter.acquire("a", 1) == 1.0
    assert limiter.acquire("b", 1) == 0.0
    assert limiter.acquire("b", 1) == 1.0
    limiter.clear()
    assert limiter.acquire("a", 1) == 0.0
    assert limiter.acquire("b", 1) == 0.0


@pytest.mark.parametrize(
    ("rate_per_s", "calls"),
    [(0.2, 1), (1.0, 1), (1.999, 1), (2.9, 2), (5.0, 5), (7.5, 7)],
)
def test_non_integer_rate_rounds_down_to_at_least_one_call(rate_per_s: float, calls: int) -> None:
    limiter = SlidingWindowLimiter(FakeClock())

    waits = [limiter.acquire("a", rate_per_s) for _ in range(calls + 1)]

    assert calls_per_window(rate_per_s) == calls
    assert waits == [0.0] * calls + [1.0]


def test_lowering_the_rate_live_waits_for_the_rth_latest_call() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock)
    for now_s in (100.0, 100.25, 100.5):
        clock.now_s = now_s
        assert limiter.acquire("a", 3) == 0.0

    clock.now_s = 100.75
    assert limiter.acquire("a", 2) == 0.5  # room for a 2nd call when 100.25 leaves


# --- the strategy chosen by rate_window -----------------------------------------------------


def test_sliding_ignores_burst_and_bucket_uses_it() -> None:
    limiter = PerTokenLimiter(FakeClock())

    bucket = [limiter.acquire("a", "bucket", 2.0, 5.0) for _ in range(6)]
    limiter.clear()
    sliding = [limiter.acquire("a", "sliding", 2.0, 5.0) for _ in range(3)]

    assert bucket == [0.0] * 5 + [0.5]
    assert sliding == [0.0, 0.0, 1.0]


def test_a_strategy_change_takes_effect_on_the_next_call_from_empty() -> None:
    limiter = PerTokenLimiter(FakeClock())
    assert limiter.acquire("a", "bucket", 1.0, 1.0) == 0.0
    assert limiter.acquire("a", "bucket", 1.0, 1.0) == 1.0

    assert limiter.acquire("a", "sliding", 1.0, 1.0) == 0.0
    assert limiter.acquire("a", "sliding", 1.0, 1.0) == 1.0
    assert limiter.acquire("a", "bucket", 1.0, 1.0) == 0.0


def test_clear_resets_the_sliding_window() -> None:
    limiter = PerTokenLimiter(FakeClock())
    assert limiter.acquire("a", "sliding", 1.0, 1.0) == 0.0
    assert limiter.acquire("a", "sliding", 1.0, 1.0) == 1.0

    limiter.clear()

    assert limiter.acquire("a", "sliding", 1.0, 1.0) == 0.0
