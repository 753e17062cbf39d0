"""The swap task: thin orchestration of store, limits, client and policy around one API call.

Order matters for money: the job record is checked under a per-job lease before any call, so a
redelivered or duplicated message never calls the API for a job that already succeeded, and the
call is counted in the record before it is made, so a crash mid-call still leaves a trace. Every
call passes the global limits first; a job that must wait long is parked outside the broker.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any, NoReturn

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from faceswap_jobs.batches.messages import Origin
from faceswap_jobs.callbacks.signing import callback_url, new_submission, ticket_for
from faceswap_jobs.celery_app import SWAP_TASK
from faceswap_jobs.connections import OUTAGE_ERRORS
from faceswap_jobs.errors import (
    AmbiguousCallError,
    FaceSwapError,
    InvalidSwapRequest,
    RateLimitedError,
)
from faceswap_jobs.jobs.transitions import Ending
from faceswap_jobs.limits import Admission
from faceswap_jobs.limits.budget import Usage, job_scopes
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest, SwapResult
from faceswap_jobs.policy import Action, Decision, next_step
from faceswap_jobs.validation import BATCH_NAME, check_metadata
from faceswap_jobs.worker.deadline import expire_if_late
from faceswap_jobs.worker.observe import (
    CallTiming,
    attempt_started,
    job_fields,
    observe_call,
    timed,
)
from faceswap_jobs.worker.outcome import recorded
from faceswap_jobs.worker.runtime import LEASE_MARGIN_S, Runtime, runtime_for

log = logging.getLogger(__name__)

_HOST = socket.gethostname()
LEASE_POLL_S = 1.0


@shared_task(
    bind=True,
    name=SWAP_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    throws=(FaceSwapError,),
)
def swap(
    self: Task,
    job_id: str,
    request: dict[str, Any],
    origin: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Call the API once for `job_id`, then succeed, fail, or schedule the next try.

    `origin` and `metadata` come with bulk jobs, whose record the worker writes on first sight
    (the enqueuer writes only the message). Redis away for longer than every retry: the message
    goes back to its queue (or, if even that fails, to the broker's unacked set, which restores
    it after the visibility timeout), never acknowledged for a job that did not end. Any other
    exception the task does not expect ends the job `failed` (`_end_poisoned`)."""
    try:
        return _swap(self, job_id, request, origin, metadata)
    except (*OUTAGE_ERRORS, OperationalError) as exc:
        log.warning("job %s: Redis unreachable (%s); its message goes back to the queue", job_id,
                    type(exc).__name__)  # fmt: skip
        raise Reject(exc, requeue=True) from None
    except SoftTimeLimitExceeded:
        log.warning("job %s: the soft time limit struck outside a call; back to the queue", job_id)
        raise Reject("soft time limit", requeue=True) from None
    except (Ignore, Reject, Retry):
        raise
    except Exception as exc:
        if isinstance(exc, FaceSwapError) and not isinstance(exc, InvalidSwapRequest):
            raise
        try:
            failure = _end_poisoned(self, job_id, origin, exc)
        except (*OUTAGE_ERRORS, OperationalError):
            raise Reject("Redis unreachable while ending a poisoned job", requeue=True) from None
        raise failure from None


def _end_poisoned(task: Task, job_id: Any, origin: Any, exc: Exception) -> FaceSwapError:
    """End the job of a message the worker could not process (an exception it does not expect,
    an invalid request in a message) as `failed` with `internal_error`: the dead-letter queue and
    the batch counters see it, and its message is acknowledged instead of looping. Returns the
    error for Celery to record: the exception's type and a bounded, redacted text, never more.

    A message naming no job we know is acknowledged and logged once; a batch row's counters
    still move (`started`, `failed`) so the batch does not wait for it forever."""
    rt = runtime_for(task.app)
    error = FaceSwapError(_internal_message(rt.held_secrets(), exc), None, "internal_error")
    if not _usable_job_id(job_id):
        log.error("dropped a message with no usable job id: %s", error.message)
        return error
    ended = rt.jobs.fail_without_call(job_id, error.to_dict(), "internal_error", time.time())
    state = rt.store.state(job_id)
    if not ended and state is JobState.RUNNING and rt.jobs.lease_ttl_s(job_id) == 0:
        ending = Ending(JobState.FAILED, "failed", error=error.to_dict(),
                        failure_reason="internal_error")  # fmt: skip
        ended = rt.jobs.settle(job_id, ending)[0] == 1
    if ended:
        log.error("job %s failed: %s", job_id, error.message)
    elif state is None:
        row = Origin.from_arg(origin)
        if row is not None and BATCH_NAME.fullmatch(row.batch):
            rt.batches.count(row.batch, "started")
            rt.batches.count(row.batch, "failed")
        log.error("job %s: dropped its message, which no record matches: %s", job_id,
                  error.message)  # fmt: skip
    elif state.finished and isinstance(exc, FaceSwapError):
        return exc
    else:
        log.error("job %s (%s) left as it is: %s", job_id, state, error.message)
    return error


_INTERNAL_TEXT_CHARS = 200
_SECRET_SHAPES = (
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]*@"), r"\1***@"),
    (re.compile(r"(?i)\b(bearer|token|password|secret|authorization)\b([\s:=]+)\S+"),
     r"\1\2***"),
)  # fmt: skip
"""Credentials in URLs and `token=...`-shaped text, which an exception's text may carry."""


def _internal_message(secrets: Sequence[str], exc: Exception) -> str:
    """`unexpected TypeName: text` with the text bounded, printable and without `secrets` (the
    ones the worker holds) or anything shaped like one: it is stored, exported and shown."""
    text = str(exc)
    for secret in secrets:
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    text = "".join(ch if ch.isprintable() else " " for ch in text[: _INTERNAL_TEXT_CHARS * 2])
    if len(text) > _INTERNAL_TEXT_CHARS:
        text = text[:_INTERNAL_TEXT_CHARS] + "..."
    return f"unexpected {type(exc).__name__} in the worker" + (f": {text}" if text else "")


def _usable_job_id(job_id: Any) -> bool:
    """A job id Redis keys can be built from; anything else is no job of ours."""
    if not isinstance(job_id, str) or not 0 < len(job_id) <= 256:
        return False
    try:
        job_id.encode()
    except UnicodeEncodeError:
        return False
    return True


def _swap(
    self: Task,
    job_id: str,
    request: dict[str, Any],
    origin: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    rt = runtime_for(self.app)
    row = Origin.from_arg(origin)
    if row is not None and rt.store.get(job_id) is None and rt.batches.is_cancelled(row.batch):
        _drop_cancelled_row(self, rt, job_id, request, row, metadata)
    record = _load_or_adopt(rt, job_id, request, self.request.delivery_info or {}, row, metadata)
    if row is None:
        rt.store.claim(job_id)
    if row is not None and record.batch_position not in (None, row.position):
        log.info("line %d of batch %s repeats job %s: no second call", row.line, row.batch, job_id)
        rt.batches.count(row.batch, "duplicates")
        raise Ignore()
    if record.batch and not record.state.finished and rt.batches.is_cancelled(record.batch):
        _cancel_unless_running(self, rt, record)
    if record.state is JobState.SUCCEEDED and record.result is not None:
        return record.result.model_dump()
    if record.state is JobState.CANCELLED:
        _revoked(self, job_id)
    if record.state.finished:
        raise record.error() or FaceSwapError(f"job {job_id} is {record.state}")

    holder = f"{_HOST}:{uuid.uuid4().hex}"
    if not _take_lease(rt, job_id, holder):
        wait_s = min(rt.jobs.lease_ttl_s(job_id) + 1.0, rt.settings.max_countdown_s)
        log.info("job %s is being called by another worker; checking in %.1fs", job_id, wait_s)
        raise self.retry(countdown=wait_s)
    try:
        with rt.leases.held(job_id, holder):
            return _call_under_lease(self, rt, job_id, holder)
    finally:
        recorded(lambda: rt.jobs.release_lease(job_id, holder))


def _take_lease(rt: Runtime, job_id: str, holder: str) -> bool:
    """The job's lease, waiting up to one lease lifetime for it (and half the soft time limit at
    most): a holder that died (its message came back) lets it lapse by then, and waiting here
    keeps the job's place instead of sending it to the back of its queue. A live holder keeps
    renewing it: then False."""
    patience = min(rt.leases.ttl_s + 1.0, rt.settings.soft_time_limit_s / 2)
    deadline = time.monotonic() + patience
    while not rt.jobs.acquire_lease(job_id, holder, rt.leases.ttl_s):
        if time.monotonic() >= deadline:
            return False
        time.sleep(LEASE_POLL_S)
    return True


def _load_or_adopt(
    rt: Runtime,
    job_id: str,
    request: dict[str, Any],
    delivery_info: dict[str, Any],
    row: Origin | None,
    metadata: dict[str, Any] | None,
) -> JobRecord:
    """The job's record; a message whose record expired or was never written gets a new one."""
    record = rt.store.get(job_id)
    if record is not None:
        return record
    now = time.time()
    adopted = JobRecord(
        id=job_id,
        state=JobState.QUEUED,
        request=SwapRequest.parse(request),
        queue=str(delivery_info.get("routing_key") or rt.settings.interactive_queue),
        created_at=now,
        updated_at=now,
        metadata=check_metadata(metadata) if metadata else {},
        **(_batch_fields(row) if row else {}),
    )
    if not rt.store.create(adopted):
        return rt.store.get(job_id) or adopted
    rt.store.mark_sent(job_id, taken=True)
    if row is not None:
        rt.batches.count(row.batch, "started")
    return adopted


def _batch_fields(row: Origin) -> dict[str, Any]:
    return {
        "batch": row.batch,
        "batch_position": row.position,
        "batch_line": row.line,
        "row_id": row.row_id,
    }


def _cancel_unless_running(task: Task, rt: Runtime, record: JobRecord) -> NoReturn:
    """A job of a cancelled batch ends here, before any call; one whose call is running (another
    worker holds its lease) is left to finish."""
    if record.state is not JobState.RUNNING and rt.jobs.cancel(record.id, time.time()):
        log.info("job %s: its batch %s was cancelled", record.id, record.batch)
        _revoked(task, record.id)
    raise Ignore()


def _drop_cancelled_row(
    task: Task,
    rt: Runtime,
    job_id: str,
    request: dict[str, Any],
    row: Origin,
    metadata: dict[str, Any] | None,
) -> NoReturn:
    """A row of a cancelled batch that no worker took yet ends without a call, but as a record
    (`cancelled`, with its row id, URLs and metadata) so `status`, `get_job` and exports know
    it like any other end; the batch counts it as cancelled while queued."""
    now = time.time()
    cancelled = JobRecord(
        id=job_id,
        state=JobState.CANCELLED,
        request=SwapRequest.parse(request),
        queue=str((task.request.delivery_info or {}).get("routing_key") or rt.settings.bulk_queue),
        created_at=now,
        updated_at=now,
        metadata=check_metadata(metadata) if metadata else {},
        failure_reason="batch cancelled",
        **_batch_fields(row),
    )
    if rt.store.create(cancelled):
        rt.batches.count(row.batch, "cancelled_queued")
        log.info("job %s: its batch %s was cancelled before it started", job_id, row.batch)
        _revoked(task, job_id)
    raise Ignore()


def _revoked(task: Task, job_id: str) -> NoReturn:
    """A cancelled job's end as Celery and Flower know ends: REVOKED in the result backend and a
    `task-revoked` event (the task had announced `task-started`; without an end Flower would show
    it started for ever)."""
    task.backend.mark_as_revoked(job_id, "batch cancelled", request=task.request)
    task.send_event("task-revoked", terminated=False, signum=None, expired=False)
    raise Ignore()


def _call_under_lease(task: Task, rt: Runtime, job_id: str, holder: str) -> dict[str, Any]:
    record = rt.store.get(job_id)
    if record is None:
        raise FaceSwapError(f"job {job_id} vanished from the store")
    if record.state is JobState.SUCCEEDED and record.result is not None:
        return record.result.model_dump()
    if record.paused_at is not None:
        paused_s = rt.jobs.unpause(job_id, time.time())
        record = record.model_copy(update={"paused_at": None, "paused_s": paused_s})
    record = _close_interrupted_call(rt, record)
    if late := expire_if_late(rt, record):
        raise late

    admission = rt.limits.admit(holder, bulk=record.queue == rt.settings.bulk_queue,
                                scopes=job_scopes(record.queue, record.batch))  # fmt: skip
    if not admission.admitted:
        _wait_outside_the_broker(task, rt, record, admission)
    for crossed in admission.budget_crossed:
        _announce_budget(task, crossed)
    if late := expire_if_late(rt, record):
        rt.limits.withdraw(admission, holder)
        raise late
    callback_base, secret = rt.settings.callback_base_url, rt.settings.webhook_secret
    submission = new_submission() if callback_base and secret else None
    attempt = Attempt(
        number=record.calls + 1,
        started_at=time.time(),
        worker=_HOST,
        submission=submission,
        token_id=admission.token_id,
    )
    api = rt.client_for(admission.token_id)
    rt.jobs.start_attempt(job_id, attempt)
    attempt_started(record, attempt)
    timing = CallTiming()
    try:
        try:
            with timed(timing):
                if callback_base and secret and submission:
                    ticket = ticket_for(job_id, submission, rt.settings.callback_wait_s,
                                        time.time())  # fmt: skip
                    url = callback_url(callback_base, secret.get_secret_value(), ticket)
                    api_task_id = api.submit(record.request, url)
                else:
                    result = api.swap(record.request)
        except SoftTimeLimitExceeded:
            raise AmbiguousCallError(
                "the soft time limit stopped this call; it may have been billed",
                None,
                "soft_time_limit",
            ) from None
    except FaceSwapError as exc:
        failure = exc
        try:
            recorded(lambda: _after_failure(task, rt, record, attempt, failure, admission))
        finally:
            observe_call(rt, record, attempt, timing)
        raise
    try:
        if callback_base:
            recorded(lambda: _await_callback(task, rt, record, attempt, api_task_id, admission))
        done = attempt.model_copy(update={"ended_at": time.time(), "outcome": "succeeded"})
        recorded(lambda: _end_succeeded(rt, job_id, done, admission, result))
    finally:
        observe_call(rt, record, attempt, timing)
    log.info("job %s succeeded after %d call(s)", job_id, record.calls + 1,
             extra=job_fields(record, attempt, api_task_id=result.task_id))  # fmt: skip
    return result.model_dump()


def _end_succeeded(
    rt: Runtime, job_id: str, done: Attempt, admission: Admission, result: SwapResult
) -> None:
    rt.limits.release(admission)
    rt.limits.on_success(admission)
    ending = Ending(JobState.SUCCEEDED, "succeeded", result=result, token_id=admission.token_id)
    rt.jobs.end_attempt(job_id, done, ending)


def _await_callback(
    task: Task,
    rt: Runtime,
    record: JobRecord,
    attempt: Attempt,
    api_task_id: str,
    admission: Admission,
) -> NoReturn:
    """The API accepted the job: keep its in-flight slot until the callback, free the worker."""
    rt.limits.on_success(admission)
    wait_s = rt.settings.callback_wait_s
    rt.limits.hold(admission, wait_s + LEASE_MARGIN_S)
    if rt.jobs.accept(
        record.id, attempt, api_task_id, wait_s, admission.lease or "", admission.token_id
    ):
        log.info("job %s accepted as API task %s; waiting for its callback", record.id, api_task_id,
                 extra=job_fields(record, attempt, api_task_id=api_task_id))  # fmt: skip
        task.send_event(
            "task-retried", exception=f"waiting: callback for {api_task_id}", traceback=""
        )
    else:
        rt.limits.release(admission)
        log.info("job %s was settled by a callback before its submission was recorded", record.id)
    raise Ignore()


def _close_interrupted_call(rt: Runtime, record: JobRecord) -> JobRecord:
    """A call left `in_progress` means its worker died mid-call: it may have been billed.

    It spends one attempt, and the policy decides whether the job may be called again.
    """
    if not record.history or record.history[-1].outcome != "in_progress":
        return record
    lost = AmbiguousCallError(
        "the worker stopped during this call; it may have been billed", None, "worker_lost"
    )
    now = time.time()
    step = next_step(lost, record, now=now, config=rt.retry, rng=rt.rng)
    closed = record.history[-1].model_copy(
        update={"ended_at": now, "outcome": "interrupted", "error": lost.to_dict()}
    )
    token = closed.token_id or ""
    if step.decision.action is Action.FAIL:
        rt.jobs.end_attempt(record.id, closed, Ending(JobState.FAILED, "interrupted",
                            error=lost.to_dict(), failure_reason=step.decision.reason,
                            token_id=token))  # fmt: skip
        log.warning("job %s failed: %s (%s)", record.id, lost, step.decision.reason)
        raise lost
    rt.jobs.end_attempt(record.id, closed, Ending(JobState.RETRY_WAIT, "interrupted",
                        error=lost.to_dict(), token_id=token))  # fmt: skip
    log.warning("job %s: previous call was interrupted (%s); calling again", record.id, lost.code)
    return record.model_copy(update={"attempts": record.attempts + 1})


def _wait_outside_the_broker(
    task: Task, rt: Runtime, record: JobRecord, admission: Admission
) -> NoReturn:
    """Park (until a time) or pause (until the breaker closes, or its budget has room) the job,
    and let the message go."""
    now = time.time()
    if scope := admission.over_budget:
        waiting_in = rt.jobs.keys.budget_waiting(scope)
        if rt.jobs.pause(record.id, admission.reason, now, waiting_in=waiting_in):
            rt.limits.budget.waiting(scope)
        log.info("job %s paused: budget %s spent", record.id, scope)
    elif admission.paused:
        rt.jobs.pause(record.id, f"breaker open: {admission.reason}", now)
        log.info("job %s paused: breaker open (%s)", record.id, admission.reason)
    else:
        rt.jobs.park(record.id, admission.defer_s, admission.reason, now)
        log.debug("job %s parked %.2fs: %s", record.id, admission.defer_s, admission.reason)
    task.send_event("task-retried", exception=f"waiting: {admission.reason}", traceback="")
    raise Ignore()


def _announce_budget(task: Task, crossed: Usage) -> None:
    """A budget crossed its soft threshold with this call (once per scope and cap, whichever
    worker's call it was): a log line and a `budget-warning` event; the gauges show it too."""
    log.warning("budget %s: %d of %s calls spent (%.0f%%)", crossed.scope, crossed.spent,
                crossed.cap, 100 * (crossed.share or 0.0))  # fmt: skip
    task.send_event("budget-warning", scope=crossed.scope, spent=crossed.spent, cap=crossed.cap)


def _after_failure(
    task: Task,
    rt: Runtime,
    record: JobRecord,
    attempt: Attempt,
    exc: FaceSwapError,
    admission: Admission,
) -> None:
    """Tell the limits, record the failed call, and either raise `Retry` / `Ignore` or return.

    A token failure opens the breaker before anything else: every round trip before it is time
    in which other threads' calls still pass the last check."""
    if exc.opens_breaker:
        rt.limits.on_token_failure(admission, exc.message, exc.code)
    rt.limits.release(admission)
    if isinstance(exc, RateLimitedError):
        rt.limits.on_rate_limited(admission, exc.retry_after_s)
    elif not exc.opens_breaker:
        rt.limits.on_other_outcome(admission)
    now = time.time()
    step = next_step(exc, record, now=now, config=rt.retry, rng=rt.rng)
    decision = step.decision
    if decision.action is Action.PAUSE and rt.limits.usable_besides(admission.token_id):
        decision = Decision(Action.RETRY, delay_s=0.0, reason="another token takes the job")
    retrying = decision.action in (Action.RETRY, Action.DEFER)
    closed = attempt.model_copy(
        update={
            "ended_at": now,
            "outcome": "failed" if decision.action is Action.FAIL else str(decision.action),
            "counted": step.counted,
            "error": exc.to_dict(),
            "delay_s": decision.delay_s if retrying else None,
        }
    )
    error, counted, token = exc.to_dict(), step.counted, admission.token_id
    if decision.action is Action.FAIL:
        rt.jobs.end_attempt(record.id, closed, Ending(JobState.FAILED, closed.outcome, error=error,
                            counted=counted, failure_reason=decision.reason,
                            token_id=token))  # fmt: skip
        log.warning("job %s failed: %s (%s)", record.id, exc, decision.reason,
                    extra=job_fields(record, attempt, error=exc))  # fmt: skip
        return
    if decision.action is Action.PAUSE:
        rt.jobs.end_attempt(record.id, closed, Ending(JobState.PAUSED, closed.outcome, error=error,
                            counted=counted, wait_reason=decision.reason,
                            token_id=token))  # fmt: skip
        task.send_event("task-retried", exception=f"paused: {decision.reason}", traceback="")
        raise Ignore()
    rt.jobs.end_attempt(record.id, closed, Ending(JobState.RETRY_WAIT, closed.outcome, error=error,
                        counted=counted, token_id=token))  # fmt: skip
    level = logging.INFO if decision.action is Action.DEFER else logging.WARNING
    log.log(level, "job %s: %s; %s in %.2fs", record.id, exc, decision.action, decision.delay_s,
            extra=job_fields(record, attempt, error=exc))  # fmt: skip
    raise task.retry(exc=exc, countdown=decision.delay_s)
