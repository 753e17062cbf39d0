"""How far a contender has got: finished jobs and when the last one finished, read from Redis.

One pipelined round trip per poll over the jobs not yet seen finished, reading raw fields
rather than decoding whole records, so polling four times a second stays cheap next to the
workers being measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import redis
from celery import Celery

from faceswap_jobs.keys import Keys
from faceswap_jobs.models import JobState

CELERY_FINISHED = ("SUCCESS", "FAILURE")


@dataclass
class Tally:
    finished: int = 0
    failed: int = 0
    last_finish_s: float | None = None
    """Epoch seconds of the latest finish seen."""

    def add(self, finish_s: float, failed: bool) -> None:
        self.finished += 1
        self.failed += failed
        self.last_finish_s = max(self.last_finish_s or finish_s, finish_s)


class JobRecordTracker:
    """Our jobs, by the `state` and `updated_at` fields of their job records."""

    def __init__(self, client: redis.Redis, keys: Keys, job_ids: list[str]) -> None:
        self._r, self._keys = client, keys
        self._pending = list(job_ids)
        self.tally = Tally()

    def poll(self) -> Tally:
        ended, self._pending = ended_jobs(self._r, self._keys, self._pending)
        for finish_s, failed in ended:
            self.tally.add(finish_s, failed)
        return self.tally


def ended_jobs(
    client: redis.Redis, keys: Keys, pending: list[str]
) -> tuple[list[tuple[float, bool]], list[str]]:
    """One pipelined read of `pending` jobs: (finish time, failed) of those that ended, and the
    ids still pending. Raw fields, not whole records, so polling stays cheap."""
    pipe = client.pipeline(transaction=False)
    for job_id in pending:
        pipe.hmget(keys.job(job_id), "state", "updated_at")
    ended: list[tuple[float, bool]] = []
    still: list[str] = []
    for job_id, (state, updated_at) in zip(pending, pipe.execute(), strict=True):
        if state is not None and JobState(state).finished:
            ended.append((float(updated_at), state != JobState.SUCCEEDED))
        else:
            still.append(job_id)
    return ended, still


class CeleryResultTracker:
    """Baseline tasks, by the status and `date_done` Celery's Redis backend stores per task."""

    def __init__(self, client: redis.Redis, app: Celery, task_ids: list[str]) -> None:
        self._r, self._app = client, app
        self._pending = list(task_ids)
        self.tally = Tally()

    def poll(self) -> Tally:
        keys = [self._app.backend.get_key_for_task(task_id) for task_id in self._pending]
        still: list[str] = []
        for task_id, raw in zip(self._pending, self._r.mget(keys) if keys else [], strict=True):
            meta = json.loads(raw) if raw else {}
            if meta.get("status") in CELERY_FINISHED:
                done_s = datetime.fromisoformat(meta["date_done"]).timestamp()
                self.tally.add(done_s, meta["status"] != "SUCCESS")
            else:
                still.append(task_id)
        self._pending = still
        return self.tally
