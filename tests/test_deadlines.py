"""No call starts after its job's deadline: the worker and the scheduler fail the job instead."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery import Celery

from faceswap_jobs.celery_app import create_app, settings_of
from faceswap_jobs.config import Settings
from faceswap_jobs.errors import DeadlineExceededError
from faceswap_jobs.models import JobState
from faceswap_jobs.policy import deadline_passed
from faceswap_jobs.worker.runtime import Runtime
from faceswap_jobs.worker.scheduler import Scheduler
from faceswap_jobs.worker.task import _call_under_lease
from tests.support.jobs import queued_job, unique_tag

DEADLINE_S = 10.0


@pytest.fixture
def app(settings: Settings) -> Celery:
    return create_app(
        settings.model_copy(update={"deadline_s": DEADLINE_S, "key_prefix": unique_tag()})
    )


@pytest.fixture
def rt(app: Celery) -> Iterator[Runtime]:
    runtime = Runtime.build(settings_of(app), app)
    yield runtime
    runtime.redis.close()


def assert_failed_without_a_call(rt: Runtime, job_id: str) -> None:
    stored = rt.store.get(job_id)
    assert stored is not None
    assert stored.state is JobState.FAILED
    assert (stored.calls, stored.history) == (0, [])
    assert stored.last_error is not None and stored.last_error["code"] == "deadline_exceeded"
    assert rt.store.dead_letters() == [job_id]
    assert [m.limits.snapshot().in_flight for m in rt.limits.members] == [0]


def test_a_job_whose_deadline_passed_while_queued_fails_without_a_call(rt: Runtime) -> None:
    job = queued_job(rt.store, created_at=time.time() - DEADLINE_S - 1)

    with pytest.raises(DeadlineExceededError):
        _call_under_lease(None, rt, job.id, "holder")  # type: ignore[arg-type]

    assert_failed_without_a_call(rt, job.id)


def test_a_parked_job_that_comes_due_after_its_deadline_is_not_sent(
    app: Celery, rt: Runtime
) -> None:
    late = queued_job(rt.store, created_at=time.time() - DEADLINE_S - 1)
    on_time = queued_job(rt.store)
    rt.jobs.park(late.id, 0.0, "rate limit", time.time())
    rt.jobs.park(on_time.id, 0.0, "rate limit", time.time())

    sent = Scheduler(app, rt).tick()

    assert sent == 1
    assert_failed_without_a_call(rt, late.id)
    assert rt.store.get(on_time.id).state is JobState.QUEUED  # type: ignore[union-attr]
    assert rt.redis.llen(rt.settings.interactive_queue) == 1
    rt.redis.delete(rt.settings.interactive_queue)


def test_time_spent_paused_does_not_count_against_the_deadline(rt: Runtime) -> None:
    now = time.time()
    job = queued_job(rt.store, created_at=now - DEADLINE_S - 1)
    rt.jobs.pause(job.id, "breaker open", now - DEADLINE_S)
    record = rt.store.get(job.id)
    assert record is not None

    assert deadline_passed(record, now=now, config=rt.retry) is False
    assert deadline_passed(record.model_copy(update={"paused_at": None}), now=now,
                           config=rt.retry) is True  # fmt: skip
