"""Holding a strict provider's limits with several worker processes, on the real emulator's
sliding window (at most R calls in any 1-s window, 429 above): the ledger is the judge."""

from __future__ import annotations

import collections

import pytest

from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import token_id
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import wait_until
from tests.support.emulator import API_TOKEN, Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack
from tests.support.windows import max_calls_in_any_window

pytestmark = pytest.mark.integration

RATE = 20


def run_workers(stack: Stack, processes: int, threads: int, **env: str) -> None:
    stack.reset_limits()
    for i in range(processes):
        stack.start_worker(f"strict-{i}", f"--concurrency={threads}", FACESWAP_RATE_PER_S=str(RATE),
                           **env)  # fmt: skip


@pytest.mark.parametrize(
    ("window", "processes", "burst"),
    [("bucket", 2, 1), ("sliding", 2, 0), ("sliding", 4, 0), ("sliding", 4, 1)],
    ids=["bucket-2x4-burst1", "sliding-2x4-strict", "sliding-4x4-strict", "sliding-4x4-burst1"],
)
def test_worker_processes_share_one_rate_as_the_provider_counts_it(
    stack: Stack, emulator: Emulator, window: str, processes: int, burst: int
) -> None:
    """No 1-s window of the ledger holds more than R + burst calls, 429s included: a strict
    (burst 0) or bucket provider answers none of them 429. The window's margin is set for a
    shared test machine (200 ms of jitter between our check and the emulator's clock);
    bench.limiter measures the default margins' throughput."""
    emulator.reset(rate_per_s=RATE, burst=RATE, rate_window=window, latency_min_s=0.0,
                   latency_max_s=0.0)  # fmt: skip
    run_workers(stack, processes, 4, FACESWAP_RATE_BURST=str(burst),
                FACESWAP_RATE_WINDOW_MARGIN_S="0.2")  # fmt: skip
    tag = unique_tag()

    jobs = stack.submit_tagged(tag, 120)
    records = stack.wait_finished([job.id for job in jobs], timeout_s=120)
    stack.stop_workers()

    calls = emulator.calls_for(tag)
    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 120}
    assert max_calls_in_any_window([c["time"] for c in calls]) <= RATE + burst
    assert sum(r.calls for r in records) == len(calls)
    if burst == 0 or window == "bucket":
        assert collections.Counter(c["outcome"] for c in calls) == {"success": 120}


def test_the_breaker_stops_64_threads_at_the_first_answer(stack: Stack, emulator: Emulator) -> None:
    """A revoked token, 64 threads, 200 jobs: no call passes the last check once the first 401
    is answered (the gate's own record of the calls it let go, on Redis time: a thread may still
    be descheduled between that check and its clock reading), and
    the calls before it went at the limiter's pace (how many depends on how fast that answer
    came back: 2 at 50/s when it takes under 40 ms), never a burst of 64."""
    tag = unique_tag()
    emulator.reset(
        rules=[{"source_contains": tag, "status": 401, "code": "invalid_token",
                "message": "revoked"}],
        latency_min_s=0.0, latency_max_s=0.0,
    )  # fmt: skip
    stack.reset_limits()
    stack.start_worker("breaker-64", "--concurrency=64", FACESWAP_RATE_PER_S="50")
    jobs = stack.submit_tagged(tag, 200)

    wait_until(
        lambda: all(job.status() is JobState.PAUSED for job in jobs), 60.0, "every job paused", None
    )
    calls = emulator.calls_for(tag)
    keys = Keys(stack.producer.settings.key_prefix)
    opened_at = float(
        stack.producer.redis.hget(keys.breaker(token_id(API_TOKEN)), "opened_at") or 0
    )
    let_go = stack.producer.redis.zrange(keys.rate_sent(token_id(API_TOKEN)), 0, -1,
                                         withscores=True)  # fmt: skip
    refused = [a for job in jobs for a in job.record().history if a.error]
    emulator.configure(rules=[])
    stack.cli("resume")
    records = stack.wait_finished([job.id for job in jobs], timeout_s=120)
    stack.stop_workers()

    assert {c["outcome"] for c in calls} == {"rule"}
    assert len(refused) == len(calls) >= 1
    assert {a.error["code"] for a in refused if a.error} == {"invalid_token"}
    assert let_go and max(at for _, at in let_go) <= opened_at
    starts = sorted(a.started_at for a in refused)
    assert len(calls) <= 2 + 50 * (opened_at - starts[0])
    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 200}
    assert all(r.attempts == 1 for r in records)
