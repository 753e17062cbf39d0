"""Job records as producers and readers see them: create, read, and revive failed jobs.

The record is the source of truth a producer, the CLI and every worker read: Celery's result
backend mirrors the outcome for Flower and `AsyncResult`, but only this record knows whether a job
already succeeded, which is what keeps a redelivered message from calling the API again. What a
worker does to a job between its calls is in `jobs.transitions`; this module loads neither the
limiter nor anything else of the worker, so application code that only enqueues stays light.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis

from faceswap_jobs.config import Settings
from faceswap_jobs.jobs import record as layout
from faceswap_jobs.jobs.counters import BATCH_COUNTING_LUA
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import JobRecord, JobState

CREATE = """
-- KEYS: [1] job hash
-- ARGV: [1] ttl in ms, then field/value pairs
-- Returns 1 when created, 0 when a job with this id already exists (idempotent submit).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

REQUEUE_FAILED = (
    BATCH_COUNTING_LUA
    + """
-- KEYS: [1] job hash, [2] dead-letter sorted set
-- ARGV: [1] now, [2] job ttl (ms), [3] batch key prefix
-- A failed job goes back to `queued` with a fresh retry budget and deadline (its history is
-- kept); it leaves the dead-letter queue and its batch's failure count. Returns 1 when moved.
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'retried_at', ARGV[1],
  'paused_s', 0, 'updated_at', ARGV[1], 'failure_reason', '', 'wait_reason', '')
redis.call('HDEL', KEYS[1], 'paused_at')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch then uncount_batch_end(ARGV[3] .. batch, 'failed') end
return 1
"""
)

FORGET_DEAD_LETTERS = """
-- KEYS: [1] dead-letter sorted set
-- ARGV: job id, failure time, job id, failure time...
-- Removes each entry only while it still holds that failure time: a job replayed and failed
-- again since it was listed is a new failure, not the one the operator chose to forget.
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""
DEAD_LETTER_PAGE = 500


def ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class JobStore:
    """Reads job records and makes the transitions a producer needs; each is one round trip or
    one atomic script."""

    def __init__(self, client: redis.Redis, keys: Keys, *, job_ttl_s: float, result_ttl_s: float):
        self._r = self.client = client
        self.keys = keys
        self.job_ttl_ms = ms(job_ttl_s)
        self.result_ttl_ms = ms(result_ttl_s)
        self._create = client.register_script(CREATE)
        self._requeue = client.register_script(REQUEUE_FAILED)
        self._forget_dead = client.register_script(FORGET_DEAD_LETTERS)

    def create(self, record: JobRecord) -> bool:
        """Store a new job; False (and nothing written) when the id is already taken. A job
        created ended (a row of a cancelled batch) lives as long as any ended job."""
        fields: list[Any] = []
        for name, value in layout.encode(record).items():
            fields += [name, value]
        ttl_ms = self.result_ttl_ms if record.state.finished else self.job_ttl_ms
        return bool(self._create(keys=[self.keys.job(record.id)], args=[ttl_ms, *fields]))

    def forget(self, job_id: str) -> None:
        """Remove a job that could not be enqueued, so submitting it again starts clean."""
        self._r.delete(self.keys.job(job_id), self.keys.history(job_id))

    def mark_sent(self, job_id: str, *, taken: bool = False) -> None:
        """The job's message is in its queue; it stays `unclaimed` until a worker takes it
        (`taken`: a worker is writing this as it takes the message)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hset(self.keys.job(job_id), layout.SENT, "1")
        if not taken:
            pipe.zadd(self.keys.unclaimed, {job_id: time.time()})
            pipe.pexpire(self.keys.unclaimed, self.job_ttl_ms)
        pipe.execute()

    def claim(self, job_id: str) -> None:
        """A worker took the job's message."""
        self._r.zrem(self.keys.unclaimed, job_id)

    def unclaimed(self, sent_before: float, limit: int) -> list[str]:
        """Jobs whose message was sent before `sent_before` and that no worker has taken."""
        return list(
            self._r.zrangebyscore(self.keys.unclaimed, "-inf", sent_before, start=0, num=limit)
        )

    def was_sent(self, job_id: str) -> bool:
        return self._r.hget(self.keys.job(job_id), layout.SENT) == "1"

    def get(self, job_id: str) -> JobRecord | None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        pipe.lrange(self.keys.history(job_id), 0, -1)
        raw, history = pipe.execute()
        if not raw:
            return None
        return layout.decode(raw, history)

    def state(self, job_id: str) -> JobState | None:
        """Only the job's state (one field): for sweeps that look at many jobs."""
        state = self._r.hget(self.keys.job(job_id), "state")
        try:
            return JobState(state) if state is not None else None
        except ValueError:
            return None

    def summaries(self, job_ids: list[str]) -> list[dict[str, Any] | None]:
        """`record.SUMMARY_FIELDS` of many jobs in one pipeline (None for a job with no record)."""
        pipe = self._r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), layout.SUMMARY_FIELDS)
        return [layout.decode_summary(values) for values in pipe.execute()]

    def dead_letters(self, limit: int = 100) -> list[str]:
        """Failed job ids, most recent first."""
        return list(self._r.zrevrange(self.keys.dead_letters, 0, limit - 1))

    def dead_letter_entries(self, since: float | None = None) -> Iterator[tuple[str, float]]:
        """(job id, failure time) of the dead-letter queue, most recent first, failed at or after
        `since`; read a page at a time. Failures added meanwhile can show an entry twice, never
        hide one (they enter at the top)."""
        low: float | str = "-inf" if since is None else since
        start = 0
        while page := self._r.zrevrangebyscore(
            self.keys.dead_letters, "+inf", low, start=start, num=DEAD_LETTER_PAGE, withscores=True
        ):
            yield from ((str(job_id), float(score)) for job_id, score in page)
            start += len(page)

    def failed_at(self, job_id: str) -> float | None:
        """When the job entered the dead-letter queue; None when it is not in it."""
        score = self._r.zscore(self.keys.dead_letters, job_id)
        return None if score is None else float(score)

    def forget_dead_letters(self, entries: list[tuple[str, float]]) -> int:
        """Take these failures out of the dead-letter queue (the job records stay, and expire
        as any ended job's); an entry whose failure time changed since it was read stays.
        Returns how many were removed."""
        removed = 0
        for first in range(0, len(entries), DEAD_LETTER_PAGE):
            args = [v for job_id, score in entries[first:first + DEAD_LETTER_PAGE]
                    for v in (job_id, repr(score))]  # fmt: skip
            removed += int(self._forget_dead(keys=[self.keys.dead_letters], args=args))
        return removed

    def requeue_failed(self, job_id: str, now: float) -> bool:
        """A failed job is `queued` again with a fresh budget; the caller sends its message."""
        keys = [self.keys.job(job_id), self.keys.dead_letters]
        return bool(self._requeue(keys=keys, args=[now, self.job_ttl_ms, self.keys.batch("")]))


def job_store(settings: Settings, client: redis.Redis) -> JobStore:
    return JobStore(
        client,
        Keys(settings.key_prefix),
        job_ttl_s=settings.job_ttl_s,
        result_ttl_s=settings.result_ttl_s,
    )
