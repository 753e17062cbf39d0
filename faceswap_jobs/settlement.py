"""Callback mode: recording accepted submissions and settling them when the callback comes.

The API answers a callback-mode call with a task id at once and POSTs the result later, to the
webhook receiver. Three parties may settle one job (the receiver, a duplicate callback, the
reconciler that gives up on a lost one), so every transition is one Lua script that only moves a
job that is still waiting: the first settlement wins and the others change nothing.
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

from faceswap_jobs.announce import Announcement, Announcer
from faceswap_jobs.batches.store import COUNT_END_LUA
from faceswap_jobs.client import callback_error
from faceswap_jobs.errors import AmbiguousCallError, FaceSwapError, MalformedResponseError
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.breaker import CircuitBreaker
from faceswap_jobs.limits.inflight import WAKE_LIST_MAX
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapResult
from faceswap_jobs.parking import ParkingLot
from faceswap_jobs.policy import Action, RetryConfig, decide
from faceswap_jobs.store import JobStore

log = logging.getLogger(__name__)

ACCEPT = """
-- KEYS: [1] job hash, [2] history list, [3] awaiting-callback sorted set
-- ARGV: [1] api task id, [2] how long to wait for the callback (s), [3] in-flight lease,
--       [4] token id, [5] the attempt (JSON, outcome `accepted`), [6] now (host time, for
--       the record; the give-up time is on Redis time like the reconciler's clock)
-- Records a submission the API accepted, unless a callback already settled the job.
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local t = redis.call('TIME')
local give_up = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'waiting_callback', 'api_task_id', ARGV[1],
  'inflight_lease', ARGV[3], 'token_id', ARGV[4], 'updated_at', ARGV[6], 'wait_reason', 'callback')
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('LSET', KEYS[2], -1, ARGV[5])
redis.call('ZADD', KEYS[3], give_up, redis.call('HGET', KEYS[1], 'id'))
return 1
"""

SETTLE = (
    COUNT_END_LUA
    + """
-- KEYS: [1] job hash, [2] history list, [3] awaiting-callback sorted set, [4] stats hash,
--       [5] dead-letter sorted set
-- ARGV: [1] new state, [2] attempt outcome, [3] now, [4] fields to set (JSON object),
--       [5] error of the attempt (JSON or ''), [6] ttl (ms) when the job ends, else 0,
--       [7] API task id to record if none is yet (or ''), [8] in-flight key prefix,
--       [9] longest wake-up list, [10] batch key prefix
-- Settles a job still waiting (or still running: an early callback) and frees the in-flight
-- slot its call held, all at once. Returns {1} if it did, else {0, state}.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'waiting_callback' and state ~= 'running' then return {0, state or ''} end
local now = tonumber(ARGV[3])
local last = redis.call('LINDEX', KEYS[2], -1)
if last then
  local attempt = cjson.decode(last)
  if attempt.outcome == 'in_progress' or attempt.outcome == 'accepted' then
    if attempt.outcome == 'in_progress' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
    attempt.outcome = ARGV[2]
    attempt.ended_at = now
    if ARGV[5] ~= '' then attempt.error = cjson.decode(ARGV[5]) end
    redis.call('LSET', KEYS[2], -1, cjson.encode(attempt))
  end
end
local fields = cjson.decode(ARGV[4])
for name, value in pairs(fields) do redis.call('HSET', KEYS[1], name, value) end
if ARGV[7] ~= '' then redis.call('HSETNX', KEYS[1], 'api_task_id', ARGV[7]) end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated_at', ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'inflight_lease', 'token_id')
if held[1] and held[2] then
  local slots = ARGV[8] .. held[2]
  if redis.call('ZREM', slots, held[1]) == 1 then
    local wake = slots .. ':wake'
    redis.call('LPUSH', wake, '1')
    redis.call('LTRIM', wake, 0, tonumber(ARGV[9]) - 1)
    redis.call('PEXPIRE', wake, 60000)
  end
end
redis.call('HDEL', KEYS[1], 'inflight_lease')
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('ZREM', KEYS[3], id)
redis.call('HINCRBY', KEYS[4], 'calls:' .. ARGV[2], 1)
if tonumber(ARGV[6]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  redis.call('HINCRBY', KEYS[4], 'jobs:' .. ARGV[1], 1)
  local batch = redis.call('HGET', KEYS[1], 'batch')
  if batch then count_batch_end(ARGV[10] .. batch, ARGV[1]) end
end
if ARGV[1] == 'failed' then redis.call('ZADD', KEYS[5], now, id) end
return {1}
"""
)

LOST_CALLBACK_BATCH = 200


@dataclass(frozen=True)
class Settled:
    """What a callback did: `succeeded`, `retry`, `defer`, `pause`, `failed` or `ignored`."""

    outcome: str
    state: JobState | None = None


class Settlement:
    """Settles callback-mode jobs; shared by the worker, the receiver and the reconciler."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        store: JobStore,
        parking: ParkingLot,
        retry: RetryConfig,
        app: Celery,
        *,
        result_ttl_s: float,
        breaker_cooldown_s: float,
        breaker_max_cooldown_s: float,
    ) -> None:
        self._r, self._keys, self._store, self._parking = client, keys, store, parking
        self._retry = retry
        self._ttl_ms = max(1, int(result_ttl_s * 1000))
        self._breaker_cooldowns = (breaker_cooldown_s, breaker_max_cooldown_s)
        self._accept = client.register_script(ACCEPT)
        self._settle = client.register_script(SETTLE)
        self._rng = random.Random()
        self._announcer = Announcer(app)

    def close(self) -> None:
        """Flush what is still to be told to Celery's backend and Flower."""
        self._announcer.close()

    def accept(
        self, job_id: str, attempt: Attempt, api_task_id: str, wait_s: float, lease: str, token: str
    ) -> bool:
        """Record the API's task id; False when an early callback already settled the job."""
        now = time.time()
        accepted = attempt.model_copy(update={"outcome": "accepted"})
        keys = [self._keys.job(job_id), self._keys.history(job_id), self._keys.awaiting_callback]
        args = [api_task_id, wait_s, lease, token, accepted.model_dump_json(), now]
        return bool(self._accept(keys=keys, args=args))

    def on_callback(self, job_id: str, payload: dict[str, Any]) -> Settled:
        """Apply a verified callback body; idempotent, and harmless for unknown or ended jobs."""
        result = usable_result(payload)
        if result is not None:
            keys, args = self.success_call(job_id, result)
            return self.succeeded(job_id, result, self._settle(keys=keys, args=args))
        record = self._store.get(job_id)
        if record is None or record.state not in (JobState.WAITING_CALLBACK, JobState.RUNNING):
            return Settled("ignored", record.state if record else None)
        if payload.get("success") is True:
            detail = json.dumps(payload)[:500]
            error: FaceSwapError = MalformedResponseError(
                "callback has no usable image_url", None, None, None, None, detail
            )
            return self._fail_or_retry(record, error)
        return self._fail_or_retry(record, callback_error(payload))

    def success_call(self, job_id: str, result: SwapResult) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the `SETTLE` script for a successful callback: the receiver runs
        it on its asyncio client (one round trip), `on_callback` on the blocking one."""
        fields = {"result": result.model_dump_json(), "wait_reason": ""}
        return self._call(job_id, JobState.SUCCEEDED, "succeeded", fields, None, result.task_id)

    def succeeded(self, job_id: str, result: SwapResult, reply: list[Any]) -> Settled:
        """What a `success_call` did; tells Celery's backend and Flower when it settled."""
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
        seconds, micros = self._r.time()
        overdue = self._r.zrangebyscore(
            self._keys.awaiting_callback, "-inf", seconds + micros / 1e6,
            start=0, num=LOST_CALLBACK_BATCH,
        )  # fmt: skip
        settled = 0
        for job_id in overdue:
            record = self._store.get(job_id)
            if record is None or record.state is not JobState.WAITING_CALLBACK:
                self._r.zrem(self._keys.awaiting_callback, job_id)
                continue
            lost = AmbiguousCallError(
                "no callback arrived in time; resubmitting may bill the swap twice",
                None,
                "callback_lost",
            )
            if self._fail_or_retry(record, lost).outcome != "ignored":
                self._r.hincrby(self._keys.stats, "callbacks:lost", 1)
                settled += 1
        return settled

    def _fail_or_retry(self, record: JobRecord, error: FaceSwapError) -> Settled:
        now = time.time()
        decision = decide(
            error,
            attempts=record.attempts,
            deferrals=sum(1 for a in record.history if not a.counted),
            started_at=record.deadline_start,
            now=now,
            config=self._retry,
            rng=self._rng,
        )
        fields: dict[str, str] = {"last_error": json.dumps(error.to_dict())}
        if decision.action is Action.FAIL:
            fields["failure_reason"] = decision.reason
            if not self._apply_to(
                record,
                JobState.FAILED,
                "failed",
                fields,
                error,
            ):
                return Settled("ignored", record.state)
            self._announcer.announce(
                Announcement(record.id, "task-failed", {"exception": repr(error), "traceback": ""},
                             celery_states.FAILURE, error)
            )  # fmt: skip
            log.warning("job %s failed by callback: %s (%s)", record.id, error, decision.reason)
            return Settled("failed", JobState.FAILED)
        if decision.action is Action.PAUSE:
            fields["wait_reason"] = decision.reason
            fields["paused_at"] = repr(now)
            if not self._apply_to(
                record,
                JobState.PAUSED,
                "pause",
                fields,
                error,
            ):
                return Settled("ignored", record.state)
            if record.token_id:
                CircuitBreaker(
                    self._r,
                    self._keys.breaker(record.token_id),
                    cooldown_s=self._breaker_cooldowns[0],
                    max_cooldown_s=self._breaker_cooldowns[1],
                ).trip(error.message, error.code)
            self._parking.pause(record.id)
            return Settled("pause", JobState.PAUSED)
        fields["wait_reason"] = decision.reason
        if not self._apply_to(
            record,
            JobState.RETRY_WAIT,
            str(decision.action),
            fields,
            error,
        ):
            return Settled("ignored", record.state)
        self._parking.park(record.id, decision.delay_s)
        self._announcer.announce(
            Announcement(record.id, "task-retried", {"exception": repr(error), "traceback": ""})
        )
        log.info("job %s: %s; resubmitting in %.2fs", record.id, error, decision.delay_s)
        return Settled(str(decision.action), JobState.RETRY_WAIT)

    def _apply_to(
        self,
        record: JobRecord,
        state: JobState,
        outcome: str,
        fields: dict[str, str],
        error: FaceSwapError | None,
    ) -> bool:
        keys, args = self._call(record.id, state, outcome, fields, error, None)
        return bool(self._settle(keys=keys, args=args)[0])

    def _call(
        self,
        job_id: str,
        state: JobState,
        outcome: str,
        fields: dict[str, str],
        error: FaceSwapError | None,
        api_task_id: str | None,
    ) -> tuple[list[str], list[Any]]:
        keys = [
            self._keys.job(job_id),
            self._keys.history(job_id),
            self._keys.awaiting_callback,
            self._keys.stats,
            self._keys.dead_letters,
        ]
        args = [
            state,
            outcome,
            time.time(),
            json.dumps(fields),
            json.dumps(error.to_dict()) if error else "",
            self._ttl_ms if state.finished else 0,
            api_task_id or "",
            self._keys.inflight(""),
            WAKE_LIST_MAX,
            self._keys.batch(""),
        ]
        return keys, args


def usable_result(payload: dict[str, Any]) -> SwapResult | None:
    """The swap result a `success: true` callback carries, or None (a failure, or unusable)."""
    if payload.get("success") is not True:
        return None
    try:
        return SwapResult.model_validate(payload)
    except ValueError:
        return None
