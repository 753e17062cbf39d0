"""What a worker measures and logs about each call: call duration, queue wait, job-event fields.

Measurements go to Redis histograms (`jobs.histograms`), read by the exporter at scrape time. A
measurement that cannot be written (Redis away) is dropped with a debug line: losing one sample
must never hold up, fail or repeat a paid call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from faceswap_jobs.connections import OUTAGE_ERRORS
from faceswap_jobs.errors import (
    AmbiguousCallError,
    APIConnectionError,
    APIStatusError,
    FaceSwapError,
    RateLimitedError,
)
from faceswap_jobs.jobs.histograms import CALL_SECONDS, QUEUE_WAIT_SECONDS, Histograms
from faceswap_jobs.jobs.waits import ready_since
from faceswap_jobs.models import Attempt, JobRecord
from faceswap_jobs.worker.runtime import Runtime

log = logging.getLogger(__name__)


def call_result(exc: BaseException | None) -> str:
    """The `result` label of a call: `ok`, `429`, `4xx`, `5xx`, `no_answer` (no HTTP answer, or
    one that may not have been read: timeouts, resets, the soft time limit) or `error`."""
    if exc is None:
        return "ok"
    if isinstance(exc, RateLimitedError):
        return "429"
    if isinstance(exc, APIStatusError) and exc.status:
        return f"{exc.status // 100}xx"
    if isinstance(exc, AmbiguousCallError | APIConnectionError | SoftTimeLimitExceeded):
        return "no_answer"
    return "error"


def histograms(rt: Runtime) -> Histograms:
    return Histograms(rt.redis, rt.settings.key_prefix, ttl_s=rt.settings.job_ttl_s)


def _observe(rt: Runtime, name: str, labels: dict[str, str], seconds: float) -> None:
    try:
        histograms(rt).observe(name, labels, seconds)
    except OUTAGE_ERRORS as exc:
        log.debug("dropped a %s sample: Redis unreachable (%s)", name, type(exc).__name__)


@dataclass
class CallTiming:
    """How one API call went, measured in the call and written to Redis only after its outcome
    is recorded: a 401 must open the breaker without waiting on a histogram write."""

    result: str = "ok"
    seconds: float = 0.0


@contextmanager
def timed(timing: CallTiming) -> Iterator[None]:
    """Measure the API call in the block into `timing` (no I/O)."""
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        timing.result = call_result(exc)
        raise
    finally:
        timing.seconds = time.monotonic() - started


def attempt_started(record: JobRecord, attempt: Attempt) -> None:
    """Log the call's start (no I/O to Redis between the last limits check and the call)."""
    log.debug("job %s: call %d started", record.id, attempt.number,
              extra=job_fields(record, attempt))  # fmt: skip


def observe_call(rt: Runtime, record: JobRecord, attempt: Attempt, timing: CallTiming) -> None:
    """The call's duration and the job's queue wait (when its ready time is known), written once
    the call's outcome is recorded."""
    _observe(rt, CALL_SECONDS, {"queue": record.queue, "result": timing.result}, timing.seconds)
    ready = ready_since(record)
    if ready is not None:
        _observe(rt, QUEUE_WAIT_SECONDS, {"queue": record.queue}, attempt.started_at - ready)


def job_fields(
    record: JobRecord,
    attempt: Attempt | None = None,
    *,
    api_task_id: str | None = None,
    error: FaceSwapError | None = None,
) -> dict[str, Any]:
    """The fields a job-event log line carries (`extra=`), for the JSON log format."""
    fields: dict[str, Any] = {"job_id": record.id, "queue": record.queue}
    if record.batch:
        fields["batch"] = record.batch
    if attempt is not None:
        fields["attempt"] = attempt.number
        if attempt.token_id:
            fields["token"] = attempt.token_id
    task_id = api_task_id or (attempt.api_task_id if attempt else None) or record.api_task_id
    if task_id:
        fields["api_task_id"] = task_id
    if error is not None:
        fields["error_code"] = error.code or type(error).__name__
        if error.status:
            fields["status"] = error.status
        if error.trace_id:
            fields["trace_id"] = error.trace_id
    return fields
