"""Job store transitions on a real Redis, with the clock passed in."""

from __future__ import annotations

from faceswap_jobs.config import Settings
from faceswap_jobs.models import JobState
from faceswap_jobs.runtime import job_store, redis_client
from tests.conftest import running_job


def test_time_paused_by_the_breaker_moves_the_deadline(settings: Settings) -> None:
    store = job_store(settings, redis_client(settings))
    record, _ = running_job(store)

    store.set_state(record.id, JobState.PAUSED, 1000.0, reason="breaker open")
    store.set_state(record.id, JobState.PAUSED, 1010.0, reason="still open")
    first = store.unpause(record.id, 1030.0)
    store.set_state(record.id, JobState.PAUSED, 2000.0)
    total = store.unpause(record.id, 2010.0)
    again = store.unpause(record.id, 9999.0)

    stored = store.get(record.id)
    assert (first, total, again) == (30.0, 40.0, 40.0)
    assert stored is not None and stored.paused_at is None
    assert stored.deadline_start == stored.created_at + 40.0
