"""When each job finished, and how many calls our limits count in flight, read from Redis.

Like `bench.common.trackers.JobRecordTracker`, but it keeps every finish time (completions per
second are computed from them) and it follows a list of job ids that is still growing while a
submitting thread appends to it.
"""

from __future__ import annotations

import time
from collections import Counter

import redis

from bench.common.trackers import ended_jobs
from faceswap_jobs.keys import Keys


class FinishTracker:
    """Finish times (the record's `updated_at` once its state is final) and failures."""

    def __init__(self, client: redis.Redis, keys: Keys, job_ids: list[str]) -> None:
        self._r, self._keys = client, keys
        self._ids = job_ids
        self._seen = 0
        self._pending: list[str] = []
        self.finish_times_s: list[float] = []
        self.failed = 0

    @property
    def finished(self) -> int:
        return len(self.finish_times_s)

    def poll(self) -> int:
        """Read the jobs not yet seen finished (one pipelined round trip); returns `finished`."""
        submitted = len(self._ids)
        self._pending += self._ids[self._seen : submitted]
        self._seen = submitted
        ended, self._pending = ended_jobs(self._r, self._keys, self._pending)
        for finish_s, failed in ended:
            self.finish_times_s.append(finish_s)
            self.failed += failed
        return self.finished


def job_states(client: redis.Redis, keys: Keys, job_ids: list[str]) -> dict[str, int]:
    """How many jobs are in each state (`missing` for records that are gone)."""
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(keys.job(job_id), "state")
    return dict(Counter(state or "missing" for state in pipe.execute()))


def in_flight_slots(client: redis.Redis, keys: Keys, token_id: str) -> int:
    """In-flight leases our limits hold for the token now (what `faceswap-jobs limits` shows)."""
    return int(client.zcount(keys.inflight(token_id), time.time(), "+inf"))
