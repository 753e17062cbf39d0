"""The application-facing API: `submit_swap`, `get_job` and the `SwapJob` handle.

A producer needs the Redis URL, not the API token: it validates, writes the job record and sends
the task by name. Everything is refused before it is enqueued when the input is wrong.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from functools import lru_cache
from typing import Any, Literal

from celery import Celery

from faceswap_jobs.celery_app import create_app, send_swap
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import OUTAGE_ERRORS, reaching_redis, redis_client
from faceswap_jobs.errors import FaceSwapError, InvalidSwapRequest
from faceswap_jobs.jobs.store import JobStore, job_store
from faceswap_jobs.models import JobRecord, JobState, SwapResult
from faceswap_jobs.validation import submission

QueueName = Literal["interactive", "bulk"]
JOB_NAMESPACE = uuid.UUID("6f1d3c52-6a1e-4b1c-9a57-3f0c2b7d9e41")
"""uuid5 namespace: an idempotency key always maps to the same job id."""
RESEND_AFTER_S = 30.0
"""A job recorded but never sent (its producer died in between) is sent again after this long."""


class SwapJob:
    """A handle on one job; cheap to create, every call reads the job record afresh."""

    def __init__(self, job_id: str, producer: Producer) -> None:
        self.id = job_id
        self._producer = producer

    def __repr__(self) -> str:
        return f"SwapJob({self.id!r})"

    def record(self) -> JobRecord:
        record = self._producer.get_job(self.id)
        if record is None:
            raise KeyError(f"job {self.id} is unknown or has expired")
        return record

    def status(self) -> JobState:
        return self.record().state

    def result(self, timeout: float | None = None, poll_s: float = 0.2) -> SwapResult:
        """Wait for the job to finish; the swapped image, or raise the job's typed failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.05, poll_s)
        while True:
            record = self.record()
            if record.state is JobState.SUCCEEDED and record.result is not None:
                return record.result
            if record.state.finished:
                raise record.error() or FaceSwapError(f"job {self.id} ended {record.state}")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {record.state} after {timeout} s")
            remaining = poll_s if deadline is None else max(0.0, deadline - time.monotonic())
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, poll_s)


class Producer:
    """Submits jobs and reads them back; one per process is enough (it pools connections)."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app or create_app(settings)
        self.redis = redis_client(settings)
        self.store: JobStore = job_store(settings, self.redis)

    def queue_name(self, queue: QueueName) -> str:
        names = {"interactive": self.settings.interactive_queue, "bulk": self.settings.bulk_queue}
        if not isinstance(queue, str) or queue not in names:
            raise InvalidSwapRequest(f"queue must be 'interactive' or 'bulk', not {queue!r:.80}")
        return names[queue]

    def submit_swap(
        self,
        source_image_url: str,
        target_image_url: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        queue: QueueName = "interactive",
    ) -> SwapJob:
        """Validate and enqueue one swap; `ServiceUnavailableError` when Redis stays away."""
        request, metadata, key = submission(
            source_image_url,
            target_image_url,
            timeout=timeout,
            idempotency_key=idempotency_key,
            metadata=metadata,
            read_timeout_s=self.settings.read_timeout_s,
        )
        queue_name = self.queue_name(queue)
        job_id = str(uuid.uuid4()) if key is None else str(uuid.uuid5(JOB_NAMESPACE, key))
        now = time.time()
        record = JobRecord(
            id=job_id,
            state=JobState.QUEUED,
            request=request,
            queue=queue_name,
            created_at=now,
            updated_at=now,
            idempotency_key=key,
            metadata=metadata,
        )
        with reaching_redis(self.settings.redis_url):
            return self._enqueue(record)

    def _enqueue(self, record: JobRecord) -> SwapJob:
        if self.store.create(record):
            self._send(record)
            return SwapJob(record.id, self)
        existing = self.store.get(record.id)
        if existing is not None and existing.request != record.request:
            raise InvalidSwapRequest(
                f"idempotency key {record.idempotency_key!r} was already used for a different "
                "request"
            )
        stale = existing is not None and record.created_at - existing.created_at > RESEND_AFTER_S
        if stale and existing is not None and not self.store.was_sent(record.id):
            self._send(existing)
        return SwapJob(record.id, self)

    def get_job(self, job_id: str) -> JobRecord | None:
        with reaching_redis(self.settings.redis_url):
            return self.store.get(job_id)

    def job(self, job_id: str) -> SwapJob:
        return SwapJob(job_id, self)

    def _send(self, record: JobRecord) -> None:
        try:
            send_swap(self.app, record.id, record.request.body(), record.queue)
        except Exception:
            with contextlib.suppress(*OUTAGE_ERRORS):
                self.store.forget(record.id)
            raise
        self.store.mark_sent(record.id)


@lru_cache(maxsize=1)
def default_producer() -> Producer:
    """The producer built from the environment, for callers that do not manage their own."""
    return Producer(Settings())


def submit_swap(
    source_image_url: str,
    target_image_url: str,
    *,
    timeout: float | None = None,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
    queue: QueueName = "interactive",
) -> SwapJob:
    """Validate and enqueue one swap; the same idempotency key always returns the same job."""
    return default_producer().submit_swap(
        source_image_url,
        target_image_url,
        timeout=timeout,
        idempotency_key=idempotency_key,
        metadata=metadata,
        queue=queue,
    )


def get_job(job_id: str) -> JobRecord | None:
    """The stored record of a job, or None when it is unknown or expired."""
    return default_producer().get_job(job_id)
