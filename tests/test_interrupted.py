"""A call interrupted by a dead worker spends budget, and the policy decides what follows."""

from __future__ import annotations

import pytest

from faceswap_jobs.celery_app import create_app
from faceswap_jobs.config import Settings
from faceswap_jobs.errors import AmbiguousCallError
from faceswap_jobs.models import JobState
from faceswap_jobs.worker.runtime import Runtime
from faceswap_jobs.worker.task import _close_interrupted_call
from tests.support.jobs import running_job


@pytest.mark.parametrize(("max_attempts", "ends"), [(1, JobState.FAILED), (3, JobState.RETRY_WAIT)])
def test_interrupted_call_spends_an_attempt_and_asks_the_policy(
    settings: Settings, max_attempts: int, ends: JobState
) -> None:
    changed = settings.model_copy(update={"max_attempts": max_attempts})
    rt = Runtime.build(changed, create_app(changed))
    record = rt.store.get(running_job(rt.store)[0].id)
    assert record is not None

    if ends is JobState.FAILED:
        with pytest.raises(AmbiguousCallError):
            _close_interrupted_call(rt, record)
    else:
        assert _close_interrupted_call(rt, record).attempts == 1

    stored = rt.store.get(record.id)
    assert stored is not None
    assert stored.state is ends
    assert stored.attempts == 1
    assert [a.outcome for a in stored.history] == ["interrupted"]
    assert stored.history[0].error is not None
    assert stored.history[0].error["code"] == "worker_lost"
    assert (record.id in rt.store.dead_letters()) is (ends is JobState.FAILED)
