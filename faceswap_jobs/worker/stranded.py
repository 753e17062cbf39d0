"""Messages a live worker dropped go back to their queue within a minute, not after the
visibility timeout.

When a worker loses its broker connection (a Redis restart), Celery forgets the messages it
had received but not started and the retries it was holding until their time, and kombu tries
to put them back while Redis is still away: they stay in kombu's `unacked` set until the
visibility timeout (an hour by default) brings them back. Measured: 20 of 420 jobs stuck
`queued` after a 5-s restart.

The job's own record says whether anyone can still be working on a message: a job that is
`queued` (or `retry_wait` past its retry time), with no worker holding its lease, and whose
message was delivered more than `STRANDED_AFTER_S` ago, has nobody; its message goes back to
the front of its queue, and so does one whose call shows `running` with no lease (its worker
died: the lease outlives it by its time to live, and the next run records the call as
`interrupted`). A message of a finished job is only a leftover and is dropped. A job whose
lease is held is left alone, until its message is past the visibility timeout: then it goes
back whatever the state, as kombu's own sweep would do, but within 5 s (kombu's sweep runs
only every ~100 s). Each move is one
script that checks the entry is unchanged, so two workers sweeping at once move a message
once; a sweep that restores a message some worker still holds costs one redundant delivery,
which the job's lease and state turn into no call.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import redis

from faceswap_jobs.jobs.transitions import JobTransitions
from faceswap_jobs.models import JobState

log = logging.getLogger(__name__)

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
"""kombu's Redis transport keys: delivered messages by tag, and their delivery times."""
STRANDED_AFTER_S = 30.0
"""How long a delivered message may go unstarted; a live worker starts one within seconds."""
BATCH = 500

MOVE = """
-- KEYS: [1] unacked hash, [2] unacked index, [3] queue list
-- ARGV: [1] delivery tag, [2] the entry as read, [3] message to put back ('' = drop it)
-- Moves the entry only if it is unchanged: the worker did not ack it, nobody moved it first.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[3]) end
return 1
"""


class StrandedMessages:
    def __init__(
        self,
        client: redis.Redis,
        jobs: JobTransitions,
        queues: tuple[str, ...],
        visibility_s: float,
    ) -> None:
        self._r, self._jobs, self._queues = client, jobs, queues
        self._visibility_s = visibility_s
        self._move = client.register_script(MOVE)

    def sweep(self) -> tuple[int, int]:
        """One pass over messages delivered long enough ago: (put back, dropped)."""
        seconds, micros = self._r.time()
        now = seconds + micros / 1e6
        oldest_first = now - min(STRANDED_AFTER_S, self._visibility_s)
        delivered = self._r.zrangebyscore(
            UNACKED_INDEX, "-inf", oldest_first, start=0, num=BATCH, withscores=True
        )
        restored = dropped = 0
        for tag, delivered_at in delivered:
            raw = self._r.hget(UNACKED, tag)
            if raw is None:
                continue
            overdue = delivered_at <= now - self._visibility_s
            if not overdue and delivered_at > now - STRANDED_AFTER_S:
                continue
            verdict = self._verdict(raw, now, overdue=overdue)
            if verdict is None:
                continue
            queue, message = verdict
            if self._move(keys=[UNACKED, UNACKED_INDEX, queue], args=[tag, raw, message]):
                restored += bool(message)
                dropped += not message
        if restored:
            log.warning("%d message(s) left behind by a worker went back to their queue", restored)
        return restored, dropped

    def _verdict(self, raw: str, now: float, *, overdue: bool) -> tuple[str, str] | None:
        """(queue, message to put back or '' to drop) for a stranded entry, None to leave it.
        An `overdue` one (past the visibility timeout) goes back whatever its job's state."""
        try:
            message, _exchange, queue = json.loads(raw)
            headers: dict[str, Any] = message["headers"]
            job_id = str(headers["id"])
        except (ValueError, TypeError, KeyError):
            return None
        if queue not in self._queues:
            return None
        state = self._jobs.store.state(job_id)
        if state is not None and state.finished:
            return queue, ""
        if overdue:
            return queue, json.dumps(message)
        if self._jobs.lease_ttl_s(job_id) > 0:
            return None
        if state in (None, JobState.QUEUED, JobState.RUNNING) or (
            state is JobState.RETRY_WAIT and _due(headers.get("eta"), now)
        ):
            return queue, json.dumps(message)
        if state in (JobState.PAUSED, JobState.WAITING_CALLBACK):
            return queue, ""
        return None


def _due(eta: Any, now: float) -> bool:
    """True when a retry's time passed long enough ago that its holder should have run it."""
    if not isinstance(eta, str):
        return True
    try:
        return datetime.fromisoformat(eta).timestamp() + STRANDED_AFTER_S < now
    except ValueError:
        return True
