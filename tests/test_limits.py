"""Global limits on real Redis: rate fidelity, lease recovery, the breaker, 429 storms."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
import requests

from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import CircuitBreaker, token_id
from faceswap_jobs.limits.inflight import InflightSemaphore
from faceswap_jobs.limits.rate import RateConfig, RateLimiter
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until
from tests.support.emulator import API_TOKEN, Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_gcra_spaces_calls_and_reports_the_wait(redis_client: redis.Redis) -> None:
    keys = Keys(f"gcra-{unique_tag()}")
    limiter = RateLimiter(redis_client, keys.rate("t"), keys.bulk_rate("t"), RateConfig(10.0))

    first = limiter.acquire(max_wait_s=0.0)
    second = limiter.acquire(max_wait_s=0.0)
    reserved = limiter.acquire(max_wait_s=1.0)

    assert first.granted and first.wait_s == 0.0
    assert not second.granted and 0.0 < second.wait_s <= 0.1
    assert reserved.granted and 0.0 < reserved.wait_s <= 0.1


def test_bulk_work_cannot_take_the_interactive_share(redis_client: redis.Redis) -> None:
    keys = Keys(f"share-{unique_tag()}")
    config = RateConfig(1.0, burst=5, bulk_share=0.5)
    limiter = RateLimiter(redis_client, keys.rate("t"), keys.bulk_rate("t"), config)

    bulk = [limiter.acquire(max_wait_s=0.0, bulk=True).granted for _ in range(10)]
    interactive = [limiter.acquire(max_wait_s=0.0).granted for _ in range(10)]

    assert sum(bulk) == 2
    assert sum(interactive) == 3


HOLDER = """
import sys, time, redis
from faceswap_jobs.limits import CircuitBreaker, token_id
from faceswap_jobs.limits.inflight import InflightSemaphore
client = redis.Redis.from_url(sys.argv[1], decode_responses=True)
semaphore = InflightSemaphore(client, sys.argv[2], sys.argv[3], 2, 1.0)
assert semaphore.acquire(1) and semaphore.acquire(1)
print("held", flush=True)
time.sleep(60)
"""


def test_a_killed_holders_slot_comes_back_with_its_lease(
    redis_client: redis.Redis, redis_url: str
) -> None:
    keys = Keys(f"lease-{unique_tag()}")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, keys.inflight("t"), keys.inflight_wake("t")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    semaphore = InflightSemaphore(redis_client, keys.inflight("t"), keys.inflight_wake("t"), 2, 1.0)

    refused, _ = semaphore.try_acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    recovered = semaphore.acquire(timeout_s=10.0)

    assert refused is None
    assert recovered is not None
    assert semaphore.in_flight() == 1


def test_a_renewed_lease_outlives_its_ttl(redis_client: redis.Redis) -> None:
    keys = Keys(f"renew-{unique_tag()}")
    semaphore = InflightSemaphore(redis_client, keys.inflight("t"), keys.inflight_wake("t"), 1, 0.5)
    lease = semaphore.acquire(timeout_s=1.0)
    for _ in range(4):
        time.sleep(0.25)
        assert semaphore.renew_held() == 1
    assert lease is not None
    assert semaphore.try_acquire() == (None, pytest.approx(0.5, abs=0.5))
    semaphore.release(lease)
    assert semaphore.try_acquire()[0] is not None


def test_429_storm_leaves_every_attempt_count_untouched(stack: Stack, emulator: Emulator) -> None:
    emulator.reset(fault_429=1.0, retry_after_s=1.0)
    stack.start_worker("storm", "--concurrency=8")
    tag = unique_tag()
    jobs = stack.submit_tagged(tag, 20)
    wait_until(lambda: len(emulator.calls_for(tag)) >= 20, 30.0, "the storm", None)

    emulator.configure(fault_429=0.0)
    records = stack.wait_finished([job.id for job in jobs], timeout_s=120)
    stack.stop_workers()

    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 20}
    assert all(r.attempts == 1 for r in records)
    deferred = [a for r in records for a in r.history if not a.counted]
    assert len(deferred) >= 20
    assert {a.error["code"] for a in deferred if a.error} == {"too_many_requests"}
    assert sum(r.calls for r in records) == len(emulator.calls_for(tag))


def test_breaker_opens_on_401_pauses_jobs_and_resume_drains_them(
    stack: Stack, emulator: Emulator
) -> None:
    tag = unique_tag()
    emulator.reset(
        rules=[{"source_contains": tag, "status": 401, "code": "invalid_token",
                "message": "bad token", "times": None}]
    )  # fmt: skip
    stack.start_worker("breaker", "--concurrency=2", FACESWAP_BREAKER_COOLDOWN_S="600")
    jobs = stack.submit_tagged(tag, 10)

    def all_paused() -> bool:
        return all(job.status() is JobState.PAUSED for job in jobs)

    wait_until(all_paused, 60.0, "every job to pause", None)
    calls = emulator.calls_for(tag)
    assert 1 <= len(calls) <= 2
    assert {c["outcome"] for c in calls} == {"rule"}
    shown = stack.cli("status", jobs[0].id)
    assert "paused" in shown and "invalid_token" in shown
    limits_view = stack.cli("limits")
    assert "open" in limits_view and "invalid_token" in limits_view and "10 paused" in limits_view

    emulator.configure(rules=[])
    assert "10 paused job(s) released" in stack.cli("resume")
    records = stack.wait_finished([job.id for job in jobs], timeout_s=60)
    stack.stop_workers()

    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 10}
    assert all(r.attempts == 1 for r in records)
    assert collections.Counter(c["outcome"] for c in emulator.calls_for(tag)) == {
        "rule": len(calls),
        "success": 10,
    }


def test_half_open_probe_closes_the_breaker_by_itself(stack: Stack, emulator: Emulator) -> None:
    tag = unique_tag()
    emulator.reset(
        rules=[{"source_contains": tag, "status": 401, "code": "token_expired",
                "message": "expired", "times": 1}]
    )  # fmt: skip
    stack.start_worker("probe", "--concurrency=1", FACESWAP_BREAKER_COOLDOWN_S="1")
    jobs = stack.submit_tagged(tag, 5)

    records = stack.wait_finished([job.id for job in jobs], timeout_s=60)
    stack.stop_workers()

    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 5}
    outcomes = collections.Counter(c["outcome"] for c in emulator.calls_for(tag))
    assert outcomes == {"rule": 1, "success": 5}
    assert "closed" in stack.cli("limits")


def test_operator_pause_holds_work_until_resume(stack: Stack, emulator: Emulator) -> None:
    emulator.reset()
    stack.cli("pause", "--reason", "maintenance")
    stack.start_worker("operator", "--concurrency=2")
    tag = unique_tag()
    jobs = stack.submit_tagged(tag, 3)
    wait_until(lambda: all(j.status() is JobState.PAUSED for j in jobs), 30.0, "pause", None)
    assert emulator.calls_for(tag) == []
    assert "maintenance" in stack.cli("status", jobs[0].id)

    stack.cli("resume")
    records = stack.wait_finished([job.id for job in jobs], timeout_s=60)
    stack.stop_workers()

    assert [r.state for r in records] == [JobState.SUCCEEDED] * 3
    assert len(emulator.calls_for(tag)) == 3


def scrape(url: str) -> dict[str, float]:
    samples = {}
    for line in requests.get(url, timeout=5).text.splitlines():
        if line.startswith("faceswap_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_exporter_counts_calls_and_shows_limits(stack: Stack, emulator: Emulator) -> None:
    emulator.reset()
    port = free_port()
    exporter = ManagedProcess(
        "metrics",
        python_module("faceswap_jobs", "metrics", "--port", str(port)),
        stack.logs / "metrics.log",
        stack.env(),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(http_ok(url), 30.0, "metrics exporter", exporter.log_path)
        before = scrape(url)
        stack.start_worker("metrics", "--concurrency=2")
        tag = unique_tag()
        jobs = stack.submit_tagged(tag, 3)
        stack.wait_finished([job.id for job in jobs], timeout_s=60)
        stack.stop_workers()
        stats = f"{stack.producer.settings.key_prefix}:stats"
        stack.producer.redis.hincrby(stats, "callbacks:refused:stale_submission", 2)
        stack.producer.redis.hincrby(stats, "callbacks:applied", 1)
        after = scrape(url)
    finally:
        exporter.stop()

    succeeded = 'faceswap_calls_total{outcome="succeeded"}'
    assert after[succeeded] - before.get(succeeded, 0.0) == 3
    finished = 'faceswap_jobs_finished_total{state="succeeded"}'
    assert after[finished] - before.get(finished, 0.0) == 3
    refused = 'faceswap_callbacks_refused_total{why="stale_submission"}'
    assert after[refused] - before.get(refused, 0.0) == 2
    applied = "faceswap_callbacks_applied_total"
    assert after[applied] - before.get(applied, 0.0) == 1
    token = f'{{token="{token_id(API_TOKEN)}"}}'
    assert after[f"faceswap_breaker_state{token}"] == 0
    assert after[f"faceswap_rate_ceiling_per_second{token}"] == 1000
    assert after[f"faceswap_in_flight{token}"] == 0
    assert after['faceswap_jobs_waiting{why="paused"}'] == 0


def test_an_abandoned_probe_hands_the_turn_to_the_next_caller(redis_client: redis.Redis) -> None:
    keys = Keys(f"breaker-{unique_tag()}")
    breaker = CircuitBreaker(redis_client, keys.breaker("t"), cooldown_s=0.01, max_cooldown_s=1.0)
    breaker.trip("bad token", "invalid_token")
    time.sleep(0.05)

    first = breaker.check("worker-a", probe_lease_s=60.0)
    blocked = breaker.check("worker-b", probe_lease_s=60.0)
    abandoned = breaker.abandon_probe("worker-a")
    second = breaker.check("worker-b", probe_lease_s=60.0)

    assert (first.state, blocked.state, abandoned, second.state) == ("probe", "open", True, "probe")
    assert breaker.abandon_probe("worker-a") is False


def test_a_tripped_breaker_names_the_api_error_code_and_a_pause_its_reason(
    redis_client: redis.Redis,
) -> None:
    """Every job the breaker holds shows the code, not only the one whose call drew it."""
    keys = Keys(f"breaker-{unique_tag()}")
    tripped = CircuitBreaker(redis_client, keys.breaker("a"), cooldown_s=60, max_cooldown_s=60)
    paused = CircuitBreaker(redis_client, keys.breaker("b"), cooldown_s=60, max_cooldown_s=60)
    tripped.trip("bad token", "invalid_token")
    paused.pause("maintenance")

    assert tripped.check("w", probe_lease_s=1.0).reason == "invalid_token: bad token"
    assert paused.check("w", probe_lease_s=1.0).reason == "maintenance"


def test_every_reader_shows_the_limits_the_workers_enforce(stack: Stack) -> None:
    """Workers at 40/s and 7 in flight; `limits` from shells that say 5/s, 10/s, or hold no token
    at all and name it by FACESWAP_TOKEN_ID: the same ceiling, cap and pause every time."""
    stack.stop_workers()
    stack.start_worker(
        "published", "--concurrency=2", FACESWAP_RATE_PER_S="40", FACESWAP_MAX_IN_FLIGHT="7"
    )
    wait_until(lambda: "40/s ceiling" in stack.cli("limits"), 30.0, "the published limits", None)
    stack.cli("pause", "--reason", "maintenance")

    views = [
        stack.cli("limits", FACESWAP_RATE_PER_S="5"),
        stack.cli("limits", FACESWAP_RATE_PER_S="10", FACESWAP_MAX_IN_FLIGHT="500"),
        stack.cli("limits", FACESWAP_API_TOKEN="emulator-token",
                  FACESWAP_TOKEN_ID=token_id(API_TOKEN)),
    ]  # fmt: skip
    stack.cli("resume")
    stack.stop_workers()

    for view in views:
        assert "40/s ceiling" in view and "/ 7" in view
        assert "the workers (as they enforce them)" in view
        assert "yes: operator pause" in view
