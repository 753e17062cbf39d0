"""The last check before a call, on a real Redis: slots handed out before a cut, a pause or a
breaker opening are not spent; late wake-ups take a fresh slot; a window never overfills."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import CircuitBreaker
from faceswap_jobs.limits.gate import Gate
from faceswap_jobs.limits.rate import RateConfig, RateLimiter
from tests.support.jobs import unique_tag


@dataclass(frozen=True)
class Parts:
    keys: Keys
    rate: RateLimiter
    gate: Gate
    breaker: CircuitBreaker


def parts(client: redis.Redis, ceiling: float = 10.0) -> Parts:
    keys = Keys(f"gate-{unique_tag()}")
    return Parts(
        keys,
        RateLimiter(client, keys.rate("t"), keys.bulk_rate("t"), RateConfig(ceiling)),
        Gate(client, keys.rate("t"), keys.breaker("t"), keys.rate_sent("t")),
        CircuitBreaker(client, keys.breaker("t"), cooldown_s=0.0, max_cooldown_s=1.0),
    )


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def check(gate: Gate, caller: str, generation: str, due_at: float, cap: int = 100) -> str:
    return gate.check(
        caller, generation=generation, due_at=due_at, late_after_s=1.0, cap=cap
    ).verdict


def test_a_slot_given_before_a_cut_is_stale(redis_client: redis.Redis) -> None:
    p = parts(redis_client, 40.0)
    rate, gate = p.rate, p.gate
    slot = rate.acquire(max_wait_s=1.0)

    fresh_before = check(gate, "a", slot.generation, slot.slot_at)
    for outcome in ["ok"] * 8 + ["limited"] * 12:
        rate.on_outcome(outcome)
    stale = check(gate, "a", slot.generation, slot.slot_at)

    assert (fresh_before, stale) == ("go", "stale")


def test_a_thread_that_wakes_late_takes_a_fresh_slot(redis_client: redis.Redis) -> None:
    p = parts(redis_client)
    rate, gate = p.rate, p.gate
    slot = rate.acquire(max_wait_s=1.0)

    verdict = gate.check(
        "a", generation=slot.generation, due_at=redis_now(redis_client) - 0.5,
        late_after_s=0.1, cap=100,
    )  # fmt: skip

    assert verdict.verdict == "late" and verdict.seconds >= 0.5


def test_no_call_goes_once_the_breaker_is_open_but_its_probe(redis_client: redis.Redis) -> None:
    p = parts(redis_client)
    rate, gate, breaker = p.rate, p.gate, p.breaker
    slot = rate.acquire(max_wait_s=1.0)
    breaker.trip("bad token", "invalid_token")

    blocked = gate.check(
        "a", generation=slot.generation, due_at=slot.slot_at, late_after_s=1.0, cap=100,
    )  # fmt: skip
    probe = breaker.check("probe-holder", 30.0)
    others = check(gate, "a", slot.generation, slot.slot_at)
    holder = check(gate, "probe-holder", slot.generation, slot.slot_at)

    assert (blocked.verdict, blocked.reason) == ("breaker", "invalid_token: bad token")
    assert probe.state == "probe"
    assert (others, holder) == ("breaker", "go")


def test_a_full_window_holds_the_next_call_until_the_oldest_leaves(
    redis_client: redis.Redis,
) -> None:
    p = parts(redis_client)
    gate = p.gate
    now = redis_now(redis_client)

    verdicts = [
        gate.check("a", generation="0", due_at=now, late_after_s=5.0, cap=3) for _ in range(4)
    ]

    assert [v.verdict for v in verdicts] == ["go", "go", "go", "window"]
    assert 0.0 < verdicts[-1].seconds <= 1.0
    assert redis_client.zcard(p.keys.rate_sent("t")) == 3
