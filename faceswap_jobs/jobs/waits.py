"""Since when a job has been ready to run: what queue wait and the oldest message's age measure.

A job is ready from the moment its message was sent (the record is written, or set back to
`queued`, just before) or, after a call that asked for a retry, from the end of its countdown.
Time a job spends parked or paused by the limits is not queue wait: its message is sent again
when it is due, and the wait starts over from there.
"""

from __future__ import annotations

import json

import redis

from faceswap_jobs.jobs.store import JobStore
from faceswap_jobs.models import JobRecord, JobState


def ready_since(record: JobRecord) -> float | None:
    """When `record` last became ready to be called; None when that is not known.

    A bulk row's first delivery is not known: the enqueuer writes only its message, which
    carries no send time, and the worker writes the record as it takes it."""
    if record.state is JobState.QUEUED:
        adopted = (
            record.batch is not None
            and record.calls == 0
            and record.retried_at is None
            and record.updated_at == record.created_at
        )
        return None if adopted else record.updated_at
    if record.state is JobState.RETRY_WAIT and record.history:
        last = record.history[-1]
        if last.ended_at is not None and last.delay_s is not None:
            return last.ended_at + last.delay_s
    return None


def head_job_id(client: redis.Redis, queue: str) -> str | None:
    """The job id of the message a worker takes next from `queue` (kombu pushes on the left and
    pops on the right), or None when the queue is empty or its head is no task message."""
    raw = client.lindex(queue, -1)
    if raw is None:
        return None
    try:
        job_id = json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return job_id if isinstance(job_id, str) else None


def oldest_ready_at(client: redis.Redis, store: JobStore, queue: str) -> float | None:
    """Since when the next message of `queue` has waited (see `ready_since`); None when the queue
    is empty or that is not known."""
    job_id = head_job_id(client, queue)
    record = store.get(job_id) if job_id is not None else None
    return ready_since(record) if record is not None else None
