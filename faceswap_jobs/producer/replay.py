"""Sending failed jobs again, each with a fresh retry budget: the one path `batch retry-failed`
and `dlq replay` share.

`JobStore.requeue_failed` moves a job from `failed` to `queued` atomically, and only a job it
moved gets a message: a job replayed twice (two operators, a command run again) is sent once,
and a job that is queued, running or succeeded is left alone. The job keeps its history; its
next calls are added after the ones that failed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis
from celery import Celery

from faceswap_jobs.batches.messages import Origin, swap_message
from faceswap_jobs.celery_app import create_app, send_swap
from faceswap_jobs.config import Settings
from faceswap_jobs.jobs.store import job_store

CHUNK = 1000


@dataclass(frozen=True)
class Resent:
    """What a replay did: `sent` jobs are queued again; `skipped` were not failed (any more) or
    are gone."""

    sent: int = 0
    skipped: int = 0

    def __add__(self, other: Resent) -> Resent:
        return Resent(self.sent + other.sent, self.skipped + other.skipped)


class FailedJobs:
    """Revives failed jobs and sends their messages: a batch's row as a slim message on the bulk
    queue (as its backfill sent it), any other job by `send_swap` on its own queue."""

    def __init__(self, settings: Settings, client: redis.Redis, app: Celery | None = None) -> None:
        self._settings = settings
        self._r = client
        self._jobs = job_store(settings, client)
        self._app = app

    def resend(self, job_ids: Iterable[str]) -> Resent:
        done = Resent()
        for chunk in _chunks(job_ids, CHUNK):
            done += self._resend(chunk)
        return done

    def _resend(self, ids: list[str]) -> Resent:
        messages: list[str] = []
        sent = 0
        now = time.time()
        for job_id, job in zip(ids, self._jobs.summaries(ids), strict=True):
            if (
                job is None
                or job["state"] != "failed"
                or not self._jobs.requeue_failed(job_id, now)
            ):
                continue
            sent += 1
            if job["batch"]:
                messages.append(self._batch_message(job_id, job, now))
            else:
                self._send(job_id, job)
        if messages:
            self._r.lpush(self._settings.bulk_queue, *messages)
        return Resent(sent, len(ids) - sent)

    def _batch_message(self, job_id: str, job: dict[str, Any], now: float) -> str:
        origin = Origin(job["batch"], job["batch_position"] or 0, job["batch_line"] or 0,
                        job["row_id"])  # fmt: skip
        return swap_message(job_id, job["request"], origin, self._settings.bulk_queue,
                            metadata=job["metadata"] or None,
                            delivery_tag=f"{job_id}.retry.{now:.6f}")  # fmt: skip

    def _send(self, job_id: str, job: dict[str, Any]) -> None:
        if self._app is None:
            self._app = create_app(self._settings)
        queue = job["queue"] or self._settings.interactive_queue
        send_swap(self._app, job_id, job["request"], queue)
        self._jobs.mark_sent(job_id)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
