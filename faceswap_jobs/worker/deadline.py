"""No call starts after its job's deadline: checked before admission, after the rate-slot wait and
when a parked job comes due, so a backlog longer than the deadline fails jobs instead of billing
calls nobody waits for any more."""

from __future__ import annotations

import logging
import time

from faceswap_jobs.errors import DeadlineExceededError
from faceswap_jobs.models import JobRecord
from faceswap_jobs.policy import deadline_passed
from faceswap_jobs.worker.runtime import Runtime

log = logging.getLogger(__name__)


def expire_if_late(rt: Runtime, record: JobRecord) -> DeadlineExceededError | None:
    """Fail `record`'s job without a call when its deadline has passed; the error when it did."""
    now = time.time()
    if not deadline_passed(record, now=now, config=rt.retry):
        return None
    reason = f"deadline of {rt.retry.deadline_s:g} s passed before the next call"
    error = DeadlineExceededError(reason, None, "deadline_exceeded")
    if not rt.jobs.fail_without_call(record.id, error.to_dict(), reason, now):
        return None
    log.warning("job %s failed without a call: %s", record.id, reason)
    return error
