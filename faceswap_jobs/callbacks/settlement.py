"""Callback mode: settling a submission when its callback comes, or when it never does.

The API answers a callback-mode call with a task id at once and POSTs the result later, to the
webhook receiver. Three parties may settle one job (the receiver, a duplicate callback, the
reconciler that gives up on a lost one); each settles through `JobTransitions.settle`, which
moves only a job still waiting: the first settlement wins and the others change nothing.
A callback settles or retries its own job and nothing more: only answers to our own calls move
the limiter or the breaker, so a forged or replayed body cannot stop the token for everyone.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery import states as celery_states

from faceswap_jobs.callbacks.announce import Announcement, Announcer
from faceswap_jobs.client import callback_error
from faceswap_jobs.config import Settings
from faceswap_jobs.errors import AmbiguousCallError, FaceSwapError, MalformedResponseError
from faceswap_jobs.jobs.store import JobStore, job_store
from faceswap_jobs.jobs.transitions import CallbackOf, Ending, JobTransitions
from faceswap_jobs.models import MAX_TASK_ID_CHARS, JobRecord, JobState, SwapResult
from faceswap_jobs.policy import Action, RetryConfig, next_step

log = logging.getLogger(__name__)

LOST_CALLBACK_BATCH = 200


@dataclass(frozen=True)
class Settled:
    """What a callback did: `succeeded`, `retry`, `defer`, `pause`, `failed` or `ignored`."""

    outcome: str
    state: JobState | None = None


class Settlement:
    """Settles callback-mode jobs; shared by the receiver and the worker's reconciler."""

    def __init__(
        self, store: JobStore, jobs: JobTransitions, retry: RetryConfig, app: Celery
    ) -> None:
        self._store, self._jobs, self._retry = store, jobs, retry
        self._rng = random.Random()
        self._announcer = Announcer(app)

    def close(self) -> None:
        """Flush what is still to be told to Celery's backend and Flower."""
        self._announcer.close()

    def on_callback(self, job_id: str, submission: str, payload: dict[str, Any]) -> Settled:
        """Apply a verified callback body to the submission its URL names; idempotent, and
        harmless for unknown or ended jobs and for any other submission."""
        callback = CallbackOf(submission, callback_task_id(payload))
        result = usable_result(payload)
        if result is not None:
            reply = self._jobs.settle(job_id, success(result), callback)
            return self.succeeded(job_id, result, reply)
        record = self._store.get(job_id)
        if record is None or record.state not in (JobState.WAITING_CALLBACK, JobState.RUNNING):
            why = "unknown_job" if record is None else ("finished" if record.state.finished
                                                         else "not_waiting")  # fmt: skip
            self._jobs.count_refused_callback(why)
            return Settled("ignored", record.state if record else None)
        if payload.get("success") is True:
            detail = json.dumps(payload)[:500]
            error: FaceSwapError = MalformedResponseError(
                "callback has no usable image_url", None, None, None, None, detail
            )
            return self._fail_or_retry(record, error, callback)
        return self._fail_or_retry(record, callback_error(payload), callback)

    def success_call(
        self, job_id: str, submission: str, result: SwapResult
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the settling script for a successful callback: the receiver runs
        it on its asyncio client (one round trip), `on_callback` on the blocking one."""
        callback = CallbackOf(submission, result.task_id)
        return self._jobs.settle_call(job_id, success(result), callback)

    def succeeded(self, job_id: str, result: SwapResult, reply: list[Any]) -> Settled:
        """What a success settlement did; tells Celery's backend and Flower when it settled."""
        if not reply[0]:
            return Settled("ignored", JobState(reply[1]) if reply[1] else None)
        dumped = result.model_dump()
        self._announcer.announce(
            Announcement(job_id, "task-succeeded", {"result": repr(dumped), "runtime": 0.0},
                         celery_states.SUCCESS, dumped)
        )  # fmt: skip
        log.info("job %s succeeded by callback", job_id)
        return Settled("succeeded", JobState.SUCCEEDED)

    def reconcile(self) -> int:
        """Give up on callbacks past their deadline: retry within budget, or fail the job."""
        settled = 0
        for job_id in self._jobs.overdue_callbacks(LOST_CALLBACK_BATCH):
            record = self._store.get(job_id)
            if record is None or record.state is not JobState.WAITING_CALLBACK:
                self._jobs.stop_awaiting(job_id)
                continue
            lost = AmbiguousCallError(
                "no callback arrived in time; resubmitting may bill the swap twice",
                None,
                "callback_lost",
            )
            if self._fail_or_retry(record, lost).outcome != "ignored":
                self._jobs.count_lost_callback()
                settled += 1
        return settled

    def _fail_or_retry(
        self, record: JobRecord, error: FaceSwapError, callback: CallbackOf | None = None
    ) -> Settled:
        accepted = bool(record.history) and record.history[-1].outcome == "accepted"
        step = next_step(
            error, record, now=time.time(), config=self._retry, rng=self._rng,
            counted_already=accepted,
        )  # fmt: skip
        decision, err = step.decision, error.to_dict()
        if decision.action is Action.FAIL:
            ending = Ending(JobState.FAILED, "failed", error=err, counted=step.counted,
                            failure_reason=decision.reason)  # fmt: skip
        elif decision.action is Action.PAUSE:
            ending = Ending(JobState.PAUSED, "pause", error=err, counted=step.counted,
                            wait_reason=decision.reason)  # fmt: skip
        else:
            ending = Ending(JobState.RETRY_WAIT, str(decision.action), error=err,
                            counted=step.counted, wait_reason=decision.reason,
                            park_s=decision.delay_s)  # fmt: skip
        if not self._jobs.settle(record.id, ending, callback)[0]:
            return Settled("ignored", record.state)
        if decision.action is Action.FAIL:
            self._announcer.announce(
                Announcement(record.id, "task-failed", {"exception": repr(error), "traceback": ""},
                             celery_states.FAILURE, error)
            )  # fmt: skip
            log.warning("job %s failed by callback: %s (%s)", record.id, error, decision.reason)
            return Settled("failed", JobState.FAILED)
        if decision.action is Action.PAUSE:
            log.warning("job %s paused by callback: %s (%s)", record.id, error, decision.reason)
            return Settled("pause", JobState.PAUSED)
        self._announcer.announce(
            Announcement(record.id, "task-retried", {"exception": repr(error), "traceback": ""})
        )
        log.info("job %s: %s; resubmitting in %.2fs", record.id, error, decision.delay_s)
        return Settled(str(decision.action), JobState.RETRY_WAIT)


def success(result: SwapResult) -> Ending:
    return Ending(JobState.SUCCEEDED, "succeeded", result=result)


def callback_task_id(payload: dict[str, Any]) -> str | None:
    """The task id a callback body names, when it is one we could have recorded."""
    task_id = payload.get("task_id")
    if isinstance(task_id, str) and 0 < len(task_id) <= MAX_TASK_ID_CHARS:
        return task_id
    return None


def usable_result(payload: dict[str, Any]) -> SwapResult | None:
    """The swap result a `success: true` callback carries, or None (a failure, or unusable)."""
    if payload.get("success") is not True:
        return None
    try:
        return SwapResult.model_validate(payload)
    except ValueError:
        return None


def build_settlement(settings: Settings, client: redis.Redis, app: Celery) -> Settlement:
    store = job_store(settings, client)
    return Settlement(
        store, JobTransitions(client, store), RetryConfig.from_settings(settings), app
    )
