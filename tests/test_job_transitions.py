"""Every transition of the job record on a real Redis: what it writes, and what it refuses."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from faceswap_jobs.config import Settings
from faceswap_jobs.connections import redis_client
from faceswap_jobs.jobs.parking import ParkingLot
from faceswap_jobs.jobs.store import JobStore, job_store
from faceswap_jobs.jobs.transitions import CallbackOf, Ending, JobTransitions
from faceswap_jobs.limits.inflight import InflightSemaphore
from faceswap_jobs.models import Attempt, JobState, SwapResult
from tests.support.jobs import queued_job, running_job, unique_tag

RESULT = SwapResult(image_url="https://cdn.example.com/r.png", image_width=8, task_id="v-1")
ERROR = {"code": "api_error", "message": "boom", "status": 500}
SUBMISSION = "s-0123456789abcdef"
GAVE_UP = Ending(JobState.FAILED, "failed", error=ERROR, failure_reason="gave up")


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    prefixed = settings.model_copy(update={"key_prefix": unique_tag()})
    client = redis_client(prefixed)
    yield job_store(prefixed, client)
    client.close()


@pytest.fixture
def jobs(store: JobStore) -> JobTransitions:
    return JobTransitions(store.client, store)


def ended(attempt: Attempt, outcome: str) -> Attempt:
    return attempt.model_copy(update={"ended_at": time.time(), "outcome": outcome})


def stats(store: JobStore) -> dict[str, str]:
    return dict(store.client.hgetall(store.keys.stats))


def test_a_success_ends_the_call_counts_it_and_expires_the_record(
    store: JobStore, jobs: JobTransitions
) -> None:
    record, attempt = running_job(store)

    moved = jobs.end_attempt(record.id, ended(attempt, "succeeded"),
                             Ending(JobState.SUCCEEDED, "succeeded", result=RESULT))  # fmt: skip

    stored = store.get(record.id)
    assert moved and stored is not None
    assert (stored.state, stored.attempts, stored.calls) == (JobState.SUCCEEDED, 1, 1)
    assert stored.result == RESULT and stored.api_task_id == "v-1"
    assert [a.outcome for a in stored.history] == ["succeeded"]
    assert 0 < store.client.pttl(store.keys.job(record.id)) <= store.result_ttl_ms
    assert 0 < store.client.pttl(store.keys.history(record.id)) <= store.result_ttl_ms
    assert stats(store) == {"calls:succeeded": "1", "jobs:succeeded": "1"}


def test_an_ended_job_is_never_moved_again(store: JobStore, jobs: JobTransitions) -> None:
    record, attempt = running_job(store)
    jobs.end_attempt(record.id, ended(attempt, "succeeded"),
                     Ending(JobState.SUCCEEDED, "succeeded", result=RESULT))  # fmt: skip

    again = jobs.end_attempt(record.id, ended(attempt, "failed"),
                             Ending(JobState.FAILED, "failed", error=ERROR))  # fmt: skip

    stored = store.get(record.id)
    assert again is False
    assert stored is not None and stored.state is JobState.SUCCEEDED
    assert (jobs.park(record.id, 5.0, "x", time.time()), jobs.requeue(record.id, time.time())) == (
        False,
        False,
    )
    assert record.id not in store.dead_letters()
    assert stats(store) == {"calls:succeeded": "1", "jobs:succeeded": "1"}


def test_a_failure_is_dead_lettered_and_counted_in_its_batch(
    store: JobStore, jobs: JobTransitions
) -> None:
    record = queued_job(store, batch="nightly", batch_position=0, batch_line=2)
    attempt = Attempt(number=1, started_at=time.time())
    jobs.start_attempt(record.id, attempt)

    jobs.end_attempt(record.id, ended(attempt, "failed"), GAVE_UP)

    stored = store.get(record.id)
    assert stored is not None and stored.state is JobState.FAILED
    assert stored.failure_reason == "gave up" and stored.last_error == ERROR
    assert store.dead_letters() == [record.id]
    assert store.client.hget(store.keys.batch("nightly"), "failed") == "1"
    assert store.client.hget(store.keys.batch("nightly"), "last_end_at") is not None


def test_requeue_failed_revives_only_a_failed_job(store: JobStore, jobs: JobTransitions) -> None:
    record = queued_job(store, batch="nightly", batch_position=0, batch_line=2)
    attempt = Attempt(number=1, started_at=time.time())
    jobs.start_attempt(record.id, attempt)
    jobs.end_attempt(record.id, ended(attempt, "failed"), GAVE_UP)
    running, _ = running_job(store)

    assert store.requeue_failed(record.id, 5000.0) is True
    assert store.requeue_failed(record.id, 5001.0) is False
    assert store.requeue_failed(running.id, 5000.0) is False

    stored = store.get(record.id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.retried_at) == (JobState.QUEUED, 0, 5000.0)
    assert [a.outcome for a in stored.history] == ["failed"]
    assert store.dead_letters() == []
    assert store.client.hget(store.keys.batch("nightly"), "failed") == "0"


def test_a_rate_limited_call_spends_no_attempt(store: JobStore, jobs: JobTransitions) -> None:
    record, attempt = running_job(store)

    jobs.end_attempt(record.id, ended(attempt, "defer").model_copy(update={"counted": False}),
                     Ending(JobState.RETRY_WAIT, "defer", error=ERROR, counted=False))  # fmt: skip

    stored = store.get(record.id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.calls) == (JobState.RETRY_WAIT, 0, 1)
    assert stats(store) == {"calls:defer": "1"}


def test_park_and_pause_move_the_record_and_the_waiting_set_together(
    store: JobStore, jobs: JobTransitions
) -> None:
    parked, paused = queued_job(store), queued_job(store)
    lot = ParkingLot(store.client, store.keys)

    assert jobs.park(parked.id, 0.0, "rate limit", 1000.0)
    assert jobs.pause(paused.id, "breaker open: bad token", 1000.0)

    assert lot.counts() == (1, 1)
    assert [job_id for job_id, _ in lot.claim_due(10, 60.0)] == [parked.id]
    stored = store.get(paused.id)
    assert stored is not None
    assert (stored.state, stored.wait_reason, stored.paused_at) == (
        JobState.PAUSED,
        "breaker open: bad token",
        1000.0,
    )
    assert jobs.requeue(parked.id, 1001.0)
    assert store.get(parked.id).state is JobState.QUEUED  # type: ignore[union-attr]


def test_time_paused_by_the_breaker_moves_the_deadline(
    store: JobStore, jobs: JobTransitions
) -> None:
    record, _ = running_job(store)

    jobs.pause(record.id, "breaker open", 1000.0)
    jobs.pause(record.id, "still open", 1010.0)
    first = jobs.unpause(record.id, 1030.0)
    jobs.pause(record.id, "again", 2000.0)
    total = jobs.unpause(record.id, 2010.0)
    again = jobs.unpause(record.id, 9999.0)

    stored = store.get(record.id)
    assert (first, total, again) == (30.0, 40.0, 40.0)
    assert stored is not None and stored.paused_at is None
    assert stored.deadline_start == stored.created_at + 40.0


def test_a_settled_callback_frees_its_in_flight_slot_once(
    store: JobStore, jobs: JobTransitions
) -> None:
    token = unique_tag()
    slots = InflightSemaphore(
        store.client, store.keys.inflight(token), store.keys.inflight_wake(token), 2, 30.0
    )
    lease, _ = slots.try_acquire()
    assert lease is not None
    record, attempt = running_job(store, SUBMISSION)
    callback = CallbackOf(SUBMISSION, "vendor-7")

    assert jobs.accept(record.id, attempt, "vendor-7", 60.0, lease, token)
    first = jobs.settle(record.id, Ending(JobState.SUCCEEDED, "succeeded", result=RESULT), callback)
    second = jobs.settle(record.id, Ending(JobState.FAILED, "failed", error=ERROR), callback)

    stored = store.get(record.id)
    assert (first, second) == ([1], [0, "succeeded", "finished"])
    assert stored is not None and stored.state is JobState.SUCCEEDED
    assert (stored.attempts, stored.calls, stored.api_task_id) == (1, 1, "vendor-7")
    assert stored.inflight_lease is None
    assert [a.outcome for a in stored.history] == ["succeeded"]
    assert slots.in_flight() == 0
    assert store.client.llen(store.keys.inflight_wake(token)) == 1
    assert store.client.zcard(store.keys.awaiting_callback) == 0
    assert stats(store) == {
        "calls:succeeded": "1",
        "jobs:succeeded": "1",
        "callbacks:applied": "1",
        "callbacks:refused:finished": "1",
    }


def test_a_settled_retry_parks_the_job_in_the_same_step(
    store: JobStore, jobs: JobTransitions
) -> None:
    record, attempt = running_job(store)
    jobs.accept(record.id, attempt, "vendor-8", 60.0, "lease-x", "token-x")

    jobs.settle(record.id, Ending(JobState.RETRY_WAIT, "retry", error=ERROR, park_s=0.0))

    stored = store.get(record.id)
    assert stored is not None and stored.state is JobState.RETRY_WAIT
    assert stored.attempts == 1
    assert stored.history[-1].outcome == "retry" and stored.history[-1].error == ERROR
    assert [job_id for job_id, _ in ParkingLot(store.client, store.keys).claim_due(5, 1.0)] == [
        record.id
    ]


def test_cancel_ends_a_waiting_job_but_never_a_running_one(
    store: JobStore, jobs: JobTransitions
) -> None:
    waiting = queued_job(store, batch="b1", batch_position=0, batch_line=2)
    running, _ = running_job(store)

    assert jobs.cancel(waiting.id, time.time()) is True
    assert jobs.cancel(running.id, time.time()) is False

    assert store.get(waiting.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert store.get(running.id).state is JobState.RUNNING  # type: ignore[union-attr]
    assert store.client.hget(store.keys.batch("b1"), "cancelled") == "1"
    assert stats(store) == {"jobs:cancelled": "1"}


def test_a_record_that_expired_is_not_recreated_by_a_late_transition(
    store: JobStore, jobs: JobTransitions
) -> None:
    record, attempt = running_job(store)
    store.client.delete(store.keys.job(record.id))

    moved = jobs.end_attempt(record.id, ended(attempt, "succeeded"),
                             Ending(JobState.SUCCEEDED, "succeeded", result=RESULT))  # fmt: skip

    assert moved is False
    assert not store.client.exists(store.keys.job(record.id))


@pytest.mark.parametrize(
    ("callback", "why"),
    [
        (CallbackOf("another-submission", "vendor-8"), "stale_submission"),
        (CallbackOf(SUBMISSION, "vendor-9"), "task_mismatch"),
        (CallbackOf(SUBMISSION, None), "task_mismatch"),
    ],
)
def test_a_callback_settles_only_the_call_it_was_issued_for(
    store: JobStore, jobs: JobTransitions, callback: CallbackOf, why: str
) -> None:
    record, attempt = running_job(store, SUBMISSION)
    assert jobs.accept(record.id, attempt, "vendor-8", 60.0, "", "")
    before = int(store.client.hget(store.keys.stats, f"callbacks:refused:{why}") or 0)

    reply = jobs.settle(record.id, Ending(JobState.FAILED, "failed", error=ERROR), callback)

    stored = store.get(record.id)
    assert reply == [0, "waiting_callback", why]
    assert stored is not None and stored.state is JobState.WAITING_CALLBACK
    assert [a.outcome for a in stored.history] == ["accepted"]
    after = int(store.client.hget(store.keys.stats, f"callbacks:refused:{why}") or 0)
    assert after == before + 1
