"""Job records, their attempt history, per-job call leases and the dead-letter queue, in Redis.

The record is the source of truth a producer, the CLI and every worker read: Celery's result
backend mirrors the outcome for Flower and `AsyncResult`, but only this record knows whether a job
already succeeded, which is what keeps a redelivered message from calling the API again.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from faceswap_jobs.batches.store import COUNT_END_LUA
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapResult

CREATE_JOB = """
-- KEYS: [1] job hash
-- ARGV: [1] ttl in ms, then field/value pairs
-- Returns 1 when created, 0 when a job with this id already exists (idempotent submit).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

RELEASE_LEASE = """
-- KEYS: [1] lease key
-- ARGV: [1] holder token
-- Deletes the lease only if we still hold it, so a late finisher cannot free someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

UNPAUSE = """
-- KEYS: [1] job hash
-- ARGV: [1] now (unix s)
-- Adds the time since `paused_at` to `paused_s` and clears `paused_at`; returns paused_s.
local at = tonumber(redis.call('HGET', KEYS[1], 'paused_at'))
if not at then return redis.call('HGET', KEYS[1], 'paused_s') or '0' end
redis.call('HDEL', KEYS[1], 'paused_at')
return redis.call('HINCRBYFLOAT', KEYS[1], 'paused_s', math.max(0, tonumber(ARGV[1]) - at))
"""

COUNT_FOR_BATCH = (
    COUNT_END_LUA
    + """
-- KEYS: [1] job hash
-- ARGV: [1] batch key prefix, [2] counter
-- A job of a batch reached an end state: count it in its batch (no-op for other jobs).
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch then count_batch_end(ARGV[1] .. batch, ARGV[2]) end
return 1
"""
)

_JSON_FIELDS = ("request", "metadata", "result", "last_error")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class JobStore:
    """Reads and writes job records; every method is one round trip or one atomic script."""

    def __init__(self, client: redis.Redis, keys: Keys, *, job_ttl_s: float, result_ttl_s: float):
        self._r = client
        self._keys = keys
        self._job_ttl_ms = _ms(job_ttl_s)
        self._result_ttl_ms = _ms(result_ttl_s)
        self._create = client.register_script(CREATE_JOB)
        self._release = client.register_script(RELEASE_LEASE)
        self._unpause = client.register_script(UNPAUSE)
        self._count_for_batch = client.register_script(COUNT_FOR_BATCH)

    def create(self, record: JobRecord) -> bool:
        """Store a new job; False (and nothing written) when the id is already taken."""
        fields: list[Any] = []
        for name, value in _encode(record).items():
            fields += [name, value]
        return bool(
            self._create(keys=[self._keys.job(record.id)], args=[self._job_ttl_ms, *fields])
        )

    def forget(self, job_id: str) -> None:
        """Remove a job that could not be enqueued, so submitting it again starts clean."""
        self._r.delete(self._keys.job(job_id), self._keys.history(job_id))

    def mark_sent(self, job_id: str) -> None:
        self._r.hset(self._keys.job(job_id), "sent", "1")

    def get(self, job_id: str) -> JobRecord | None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(self._keys.job(job_id))
        pipe.lrange(self._keys.history(job_id), 0, -1)
        raw, history = pipe.execute()
        if not raw:
            return None
        return _decode(raw, history)

    def was_sent(self, job_id: str) -> bool:
        return self._r.hget(self._keys.job(job_id), "sent") == "1"

    def begin_attempt(self, job_id: str, attempt: Attempt) -> None:
        """Count the call before it is made, so a crash mid-call still shows it happened."""
        job, history = self._keys.job(job_id), self._keys.history(job_id)
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(
            job,
            mapping={
                "state": JobState.RUNNING,
                "updated_at": attempt.started_at,
                "wait_reason": "",
            },
        )
        pipe.hincrby(job, "calls", 1)
        pipe.rpush(history, attempt.model_dump_json())
        pipe.pexpire(history, self._job_ttl_ms)
        pipe.execute()

    def end_attempt(
        self,
        job_id: str,
        attempt: Attempt,
        state: JobState,
        *,
        error: dict[str, Any] | None = None,
        result: SwapResult | None = None,
        failure_reason: str | None = None,
        wait_reason: str | None = None,
    ) -> None:
        """Close the running attempt and move the job to `state`, atomically."""
        job = self._keys.job(job_id)
        fields: dict[str, Any] = {
            "state": state,
            "updated_at": attempt.ended_at or 0.0,
            "wait_reason": wait_reason or "",
        }
        if error is not None:
            fields["last_error"] = json.dumps(error)
        if result is not None:
            fields["result"] = result.model_dump_json()
            if result.task_id:
                fields["api_task_id"] = result.task_id
        if failure_reason is not None:
            fields["failure_reason"] = failure_reason
        pipe = self._r.pipeline(transaction=True)
        pipe.lset(self._keys.history(job_id), -1, attempt.model_dump_json())
        pipe.hset(job, mapping=fields)
        if attempt.counted:
            pipe.hincrby(job, "attempts", 1)
        if state.finished:
            pipe.pexpire(job, self._result_ttl_ms)
            pipe.pexpire(self._keys.history(job_id), self._result_ttl_ms)
        if state is JobState.PAUSED:
            pipe.hsetnx(job, "paused_at", attempt.ended_at or 0.0)
        if state is JobState.FAILED:
            pipe.zadd(self._keys.dead_letters, {job_id: attempt.ended_at or 0.0})
        pipe.hincrby(self._keys.stats, f"calls:{attempt.outcome}", 1)
        if state.finished:
            pipe.hincrby(self._keys.stats, f"jobs:{state}", 1)
            self._count_for_batch(keys=[job], args=[self._keys.batch(""), str(state)], client=pipe)
        pipe.execute()

    def cancel(self, job_id: str, now: float) -> None:
        """End a job of a cancelled batch that was waiting (never while a call is running)."""
        job = self._keys.job(job_id)
        pipe = self._r.pipeline(transaction=True)
        ended = {"state": JobState.CANCELLED, "updated_at": now, "wait_reason": ""}
        pipe.hset(job, mapping={**ended, "failure_reason": "batch cancelled"})
        pipe.pexpire(job, self._result_ttl_ms)
        pipe.pexpire(self._keys.history(job_id), self._result_ttl_ms)
        pipe.hincrby(self._keys.stats, f"jobs:{JobState.CANCELLED}", 1)
        self._count_for_batch(
            keys=[job], args=[self._keys.batch(""), str(JobState.CANCELLED)], client=pipe
        )
        pipe.execute()

    def set_state(self, job_id: str, state: JobState, now: float, reason: str = "") -> None:
        """Move a job between waiting states; `reason` says what it waits for."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(
            self._keys.job(job_id),
            mapping={"state": state, "updated_at": now, "wait_reason": reason},
        )
        if state is JobState.PAUSED:
            pipe.hsetnx(self._keys.job(job_id), "paused_at", now)
        pipe.execute()

    def unpause(self, job_id: str, now: float) -> float:
        """The job runs again: bank the time it spent paused; returns the total paused time."""
        return float(self._unpause(keys=[self._keys.job(job_id)], args=[now]))

    def dead_letters(self, limit: int = 100) -> list[str]:
        """Failed job ids, most recent first."""
        return list(self._r.zrevrange(self._keys.dead_letters, 0, limit - 1))

    def acquire_lease(self, job_id: str, holder: str, ttl_s: float) -> bool:
        """Only one worker may call the API for a job at a time; the lease outlives a dead one."""
        return bool(self._r.set(self._keys.lease(job_id), holder, nx=True, px=_ms(ttl_s)))

    def lease_ttl_s(self, job_id: str) -> float:
        ttl_ms = self._r.pttl(self._keys.lease(job_id))
        return max(0.0, ttl_ms / 1000.0)

    def release_lease(self, job_id: str, holder: str) -> None:
        self._release(keys=[self._keys.lease(job_id)], args=[holder])


def _encode(record: JobRecord) -> dict[str, str]:
    data = record.model_dump(mode="json", exclude={"history"}, exclude_none=True)
    encoded = {}
    for name, value in data.items():
        encoded[name] = json.dumps(value) if name in _JSON_FIELDS else str(value)
    encoded["sent"] = "0"
    return encoded


def _decode(raw: dict[str, str], history: list[str]) -> JobRecord:
    data: dict[str, Any] = {k: v for k, v in raw.items() if k != "sent" and v != ""}
    for name in _JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    data["history"] = [json.loads(item) for item in history]
    return JobRecord.model_validate(data)
