"""What the 429s say about the rate, on a real Redis: a limit is found, noise is ignored, an
outage pauses everyone and recovery is quick. Answers are fed in order; no test sleeps."""

from __future__ import annotations

import pytest
import redis

from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.rate import RateConfig, RateLimiter
from tests.support.jobs import unique_tag


def limiter(client: redis.Redis, ceiling: float, **config: float) -> RateLimiter:
    keys = Keys(f"ctl-{unique_tag()}")
    return RateLimiter(client, keys.rate("t"), keys.bulk_rate("t"), RateConfig(ceiling, **config))


def feed(rate: RateLimiter, ok: int, limited: int, retry_after_s: float | None = None) -> list[str]:
    """`ok` successes, then `limited` 429s; what each answer did."""
    return [rate.on_outcome("ok").what for _ in range(ok)] + [
        rate.on_outcome("limited", retry_after_s).what for _ in range(limited)
    ]


def test_a_share_of_429s_cuts_the_rate_to_the_limit_it_reveals(redis_client: redis.Redis) -> None:
    rate = limiter(redis_client, 40.0)
    before = rate.acquire(max_wait_s=0.0)

    whats = feed(rate, 8, 12)

    after = rate.acquire(max_wait_s=10.0)
    assert whats == ["steady"] * 19 + ["cut"]
    assert after.rate_per_s == pytest.approx(40.0 * (1 - 12 / 20) * 0.95, rel=1e-3)
    assert after.generation != before.generation
    assert after.paused_for_s == 0.0


def test_a_cut_that_stops_the_429s_is_kept(redis_client: redis.Redis) -> None:
    rate = limiter(redis_client, 40.0)
    feed(rate, 8, 12)

    whats = feed(rate, 20, 0)

    assert whats[-1] == "limit"
    assert "noise" not in whats
    assert rate.acquire(max_wait_s=10.0).rate_per_s < 16.0


def test_429s_that_do_not_follow_the_rate_are_noise(redis_client: redis.Redis) -> None:
    rate = limiter(redis_client, 30.0)

    first = feed(rate, 17, 3)
    cut_to = rate.acquire(max_wait_s=10.0).rate_per_s
    judged = feed(rate, 17, 3)
    restored = rate.acquire(max_wait_s=10.0).rate_per_s
    later = feed(rate, 17, 3)

    assert first[-1] == "cut" and cut_to == pytest.approx(30.0 * 0.85 * 0.95, rel=1e-3)
    assert judged[-1] == "noise" and restored == pytest.approx(30.0)
    assert set(later) == {"steady"}


def test_an_outage_pauses_everyone_then_the_rate_doubles_back(redis_client: redis.Redis) -> None:
    rate = limiter(redis_client, 20.0)

    whats = feed(rate, 0, 20, retry_after_s=2.0)
    during = rate.acquire(max_wait_s=0.5)
    judged = feed(rate, 20, 0)
    climbing = [rate.on_outcome("ok").rate_per_s for _ in range(8)]

    assert whats[-1] == "cut"
    assert not during.granted and 1.0 < during.paused_for_s <= 2.0
    assert judged[-1] == "limit"
    assert climbing[0] == pytest.approx(0.5 + 1.0)
    assert climbing[-1] == pytest.approx(0.5 + 8.0)


def test_answers_that_were_not_429s_count_but_do_not_climb(redis_client: redis.Redis) -> None:
    rate = limiter(redis_client, 10.0)
    feed(rate, 8, 12)
    lowered = rate.acquire(max_wait_s=10.0).rate_per_s

    whats = [rate.on_outcome("through").what for _ in range(20)]

    assert whats[-1] == "limit"
    assert rate.acquire(max_wait_s=10.0).rate_per_s == pytest.approx(lowered)


def test_strict_mode_paces_below_the_rate(redis_client: redis.Redis) -> None:
    rate = limiter(redis_client, 20.0, burst=0, window_margin_s=0.05)

    first = rate.acquire(max_wait_s=1.0)
    second = rate.acquire(max_wait_s=1.0)

    assert rate.config.strict and rate.config.window_cap(20.0) == 20
    assert second.slot_at - first.slot_at == pytest.approx(1.05 / 20.0, abs=2e-4)


def test_in_strict_mode_a_429_widens_the_window_margin(redis_client: redis.Redis) -> None:
    rate = limiter(redis_client, 20.0, burst=0, window_margin_s=0.05)
    rate.on_outcome("limited")

    first = rate.acquire(max_wait_s=1.0)
    second = rate.acquire(max_wait_s=1.0)

    assert second.slot_at - first.slot_at == pytest.approx(1.085 / 20.0, abs=2e-4)


def test_rare_429s_widen_the_window_frequent_ones_do_not(redis_client: redis.Redis) -> None:
    rare = limiter(redis_client, 20.0)
    feed(rare, 60, 1)
    feed(rare, 60, 1)
    frequent = limiter(redis_client, 20.0)
    feed(frequent, 9, 1)
    feed(frequent, 9, 1)

    spacing = []
    for rate in (rare, frequent):
        first, second = rate.acquire(max_wait_s=1.0), rate.acquire(max_wait_s=1.0)
        spacing.append(second.slot_at - first.slot_at)

    assert spacing[0] == pytest.approx((1 + 0.01 * 1.5 + 0.01) / 20.0, abs=2e-4)
    assert spacing[1] == pytest.approx(1.01 / 20.0, abs=2e-4)
