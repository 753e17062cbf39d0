"""What a worker, the receiver and the scheduler do to a job: one named, atomic step each.

start an attempt → end it (succeeded, retry_wait, paused, failed), or accept it (callback mode)
and settle it when the callback comes; park or pause a job that waits between calls; send it
back to `queued`; cancel it. Every step is one MULTI/EXEC or one Lua script (`jobs.lua`), and
this package is the only code that writes a job's hash and history.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from faceswap_jobs.jobs import lua
from faceswap_jobs.jobs.spend import day_of, spend_args
from faceswap_jobs.jobs.store import JobStore, ms
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.inflight import WAKE_LIST_MAX
from faceswap_jobs.models import Attempt, JobState, SwapResult

ANY_UNFINISHED = "*"
WAITING_OR_EARLY = f"{JobState.WAITING_CALLBACK},{JobState.RUNNING}"
"""A callback settles a job waiting for it, or one whose submission is not recorded yet."""
NOT_CALLING = ",".join(
    (JobState.QUEUED, JobState.RETRY_WAIT, JobState.PAUSED, JobState.WAITING_CALLBACK)
)


@dataclass(frozen=True)
class CallbackOf:
    """Which call a callback claims to answer: the nonce of its URL and the task id in its body."""

    submission: str
    task_id: str | None


@dataclass(frozen=True)
class Ending:
    """How an attempt ends: the job's new state and what the record keeps of it."""

    state: JobState
    outcome: str
    error: dict[str, Any] | None = None
    result: SwapResult | None = None
    failure_reason: str | None = None
    wait_reason: str = ""
    counted: bool = True
    """False when the call did not spend retry budget (rate limited, token unusable)."""
    park_s: float | None = None
    """Park the job (outside the broker) for this long; None when something else resends it."""
    token_id: str = ""
    """The token that made the call, for the spend counters; '' = the ender's own token (see
    `JobTransitions`), else the one the job recorded when its callback-mode call was accepted."""

    def fields(self) -> dict[str, str]:
        fields = {"wait_reason": self.wait_reason}
        if self.error is not None:
            fields["last_error"] = json.dumps(self.error)
        if self.result is not None:
            fields["result"] = self.result.model_dump_json()
        if self.failure_reason is not None:
            fields["failure_reason"] = self.failure_reason
        return fields


class JobTransitions:
    def __init__(self, client: redis.Redis, store: JobStore, token_id: str = "") -> None:
        """`token_id`: the token this process calls the API with (a worker), so the spend of
        the calls it ends is counted under it; '' for a process that makes no call (the callback
        receiver), whose settlements count under the token the job recorded."""
        self._r = client
        self.token_id = token_id
        self.store = store
        self.keys: Keys = store.keys
        self._end = client.register_script(lua.END_ATTEMPT)
        self._wait = client.register_script(lua.WAIT)
        self._accept = client.register_script(lua.ACCEPT)
        self._unpause = client.register_script(lua.UNPAUSE)
        self._release_lease = client.register_script(lua.RELEASE_LEASE)
        self._renew_lease = client.register_script(lua.RENEW_LEASE)
        self._start = client.register_script(lua.START_ATTEMPT)

    def acquire_lease(self, job_id: str, holder: str, ttl_s: float) -> bool:
        """Only one worker may call the API for a job at a time; the lease outlives a dead one.

        The SET answers the holder it found, so a SET sent again after its reply was lost to a
        Redis restart still knows the lease is ours."""
        found = self._r.set(self.keys.lease(job_id), holder, nx=True, px=ms(ttl_s), get=True)
        return found is None or found == holder

    def renew_lease(self, job_id: str, holder: str, ttl_s: float) -> bool:
        """Keep a lease alive while its call runs; False when it was lost (expired, taken)."""
        return bool(self._renew_lease(keys=[self.keys.lease(job_id)], args=[holder, ms(ttl_s)]))

    def lease_ttl_s(self, job_id: str) -> float:
        return max(0.0, self._r.pttl(self.keys.lease(job_id)) / 1000.0)

    def release_lease(self, job_id: str, holder: str) -> None:
        self._release_lease(keys=[self.keys.lease(job_id)], args=[holder])

    def start_attempt(self, job_id: str, attempt: Attempt) -> None:
        """Count the call before it is made, so a crash mid-call still shows it happened."""
        keys = [self.keys.job(job_id), self.keys.history(job_id)]
        args = [attempt.number, attempt.model_dump_json(), attempt.started_at,
                self.store.job_ttl_ms]  # fmt: skip
        self._start(keys=keys, args=args)

    def end_attempt(self, job_id: str, attempt: Attempt, ending: Ending) -> bool:
        """Close the job's running call as `attempt` and move the job, atomically."""
        keys, args = self._end_call(
            job_id, ANY_UNFINISHED, ending, attempt.ended_at or time.time(),
            attempt.model_dump_json(),
        )  # fmt: skip
        return bool(self._end(keys=keys, args=args)[0])

    def accept(
        self, job_id: str, attempt: Attempt, api_task_id: str, wait_s: float, lease: str, token: str
    ) -> bool:
        """Record the API's task id (in the job and in the attempt, where the callback's is checked
        against it); False when an early callback already settled the job."""
        now = time.time()
        accepted = attempt.model_copy(update={"outcome": "accepted", "api_task_id": api_task_id})
        keys = [self.keys.job(job_id), self.keys.history(job_id), self.keys.awaiting_callback]
        args = [api_task_id, wait_s, lease, token, accepted.model_dump_json(), now]
        return bool(self._accept(keys=keys, args=args))

    def settle_call(
        self, job_id: str, ending: Ending, callback: CallbackOf | None = None
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `END_ATTEMPT` settling a callback-mode job, for a caller that runs the
        script on its own (asyncio) client."""
        return self._end_call(job_id, WAITING_OR_EARLY, ending, time.time(), "", callback)

    def settle(self, job_id: str, ending: Ending, callback: CallbackOf | None = None) -> list[Any]:
        """End the call a callback (or, with `callback` None, the reconciler) answers; the reply
        is [1] when it moved the job, else [0, state, why]: the first settlement wins, later
        ones and callbacks of other submissions change nothing."""
        keys, args = self.settle_call(job_id, ending, callback)
        return list(self._end(keys=keys, args=args))

    def cancel(self, job_id: str, now: float) -> bool:
        """End a job of a cancelled batch that is waiting (never while a call is running)."""
        ending = Ending(JobState.CANCELLED, "", failure_reason="batch cancelled")
        keys, args = self._end_call(job_id, NOT_CALLING, ending, now, "")
        return bool(self._end(keys=keys, args=args)[0])

    def fail_without_call(
        self, job_id: str, error: dict[str, Any], reason: str, now: float
    ) -> bool:
        """End a job waiting between calls as `failed` (its deadline passed): no call, no slot."""
        ending = Ending(JobState.FAILED, "", error=error, failure_reason=reason)
        keys, args = self._end_call(job_id, NOT_CALLING, ending, now, "")
        return bool(self._end(keys=keys, args=args)[0])

    def park(self, job_id: str, delay_s: float, reason: str, now: float) -> bool:
        """Wait outside the broker until a time; the scheduler sends the job again then."""
        return self._move(job_id, JobState.RETRY_WAIT, reason, now, max(0.0, delay_s))

    def pause(self, job_id: str, reason: str, now: float, waiting_in: str | None = None) -> bool:
        """Wait for the token's breaker to close (or, in the sorted set `waiting_in`, for what
        that set's owner releases it for: a budget); the job keeps its place in line."""
        return self._move(job_id, JobState.PAUSED, reason, now, -1.0, waiting_in)

    def requeue(self, job_id: str, now: float) -> bool:
        """Back to `queued` as its message is sent again; False for a job that ended."""
        return self._move(job_id, JobState.QUEUED, "", now, -1.0)

    def unpause(self, job_id: str, now: float) -> float:
        """The job runs again: bank the time it spent paused; returns the total paused time."""
        return float(self._unpause(keys=[self.keys.job(job_id)], args=[now]))

    def overdue_callbacks(self, limit: int) -> list[str]:
        """Jobs whose callback is past its give-up time (on Redis time), oldest first."""
        seconds, micros = self._r.time()
        return list(
            self._r.zrangebyscore(
                self.keys.awaiting_callback, "-inf", seconds + micros / 1e6, start=0, num=limit
            )
        )

    def stop_awaiting(self, job_id: str) -> None:
        """Forget a job's callback deadline (the job settled or expired meanwhile)."""
        self._r.zrem(self.keys.awaiting_callback, job_id)

    def count_lost_callback(self) -> None:
        self._r.hincrby(self.keys.stats, "callbacks:lost", 1)

    def count_refused_callback(self, why: str) -> None:
        """A callback that changed nothing (its job unknown or ended) is counted like the ones
        `END_ATTEMPT` refuses."""
        self._r.hincrby(self.keys.stats, f"callbacks:refused:{why}", 1)

    def _move(
        self,
        job_id: str,
        state: JobState,
        reason: str,
        now: float,
        park_s: float,
        waiting_in: str | None = None,
    ) -> bool:
        keys = [self.keys.job(job_id), self.keys.parked, waiting_in or self.keys.paused]
        return bool(self._wait(keys=keys, args=[job_id, state, now, reason, park_s]))

    def _end_call(
        self,
        job_id: str,
        may_leave: str,
        ending: Ending,
        now: float,
        attempt_json: str,
        callback: CallbackOf | None = None,
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        keys = [k.job(job_id), k.history(job_id), k.awaiting_callback, k.stats, k.dead_letters,
                k.parked, k.paused, k.spend_day(day_of(now).isoformat()), k.spend_days,
                k.spend_billed]  # fmt: skip
        args: list[Any] = [
            may_leave,
            ending.state,
            ending.outcome,
            now,
            json.dumps(ending.fields()),
            attempt_json,
            json.dumps(ending.error) if ending.error else "",
            "1" if ending.counted else "0",
            self.store.result_ttl_ms if ending.state.finished else 0,
            ending.result.task_id if ending.result and ending.result.task_id else "",
            k.inflight(""),
            WAKE_LIST_MAX,
            k.batch(""),
            -1 if ending.park_s is None else max(0.0, ending.park_s),
            callback.submission if callback else "",
            (callback.task_id or "") if callback else "",
            *spend_args(ending.outcome, ending.error, not ending.state.finished, now),
            ending.token_id or self.token_id,
        ]
        return keys, args
