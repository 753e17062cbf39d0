"""Jobs made by hand: unique tags and job records in a given state."""

from __future__ import annotations

import time

from faceswap_jobs.jobs.store import JobStore
from faceswap_jobs.jobs.transitions import JobTransitions
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest


def unique_tag() -> str:
    return f"t{time.monotonic_ns()}"


def queued_job(store: JobStore, **fields: object) -> JobRecord:
    """A job as a producer leaves it: recorded, `queued`; `fields` set batch fields, times..."""
    now = time.time()
    values: dict[str, object] = {
        "id": unique_tag(),
        "state": JobState.QUEUED,
        "request": SwapRequest.parse(
            {"source_image_url": "https://x/a.png", "target_image_url": "https://x/b.png"}
        ),
        "queue": "faceswap.interactive",
        "created_at": now,
        "updated_at": now,
    }
    record = JobRecord.model_validate(values | fields)
    assert store.create(record)
    return record


def running_job(store: JobStore, submission: str | None = None) -> tuple[JobRecord, Attempt]:
    """A job whose call has started and not ended, as a worker leaves it mid-call (in callback
    mode when `submission` names the call's callback URL)."""
    record = queued_job(store)
    attempt = Attempt(number=1, started_at=time.time(), submission=submission)
    JobTransitions(store.client, store).start_attempt(record.id, attempt)
    return record, attempt
