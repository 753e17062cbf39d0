"""The worker's scheduler thread: sends parked jobs back when due and lets paused jobs go.

It runs in every worker's main process (a Celery bootstep), so parked work needs no extra
service; claims in the parking lot keep two schedulers from sending the same job twice, and a
scheduler that dies mid-send only delays its claimed jobs by the claim length.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ClassVar

import redis
from celery import Celery, bootsteps

from faceswap_jobs.celery_app import send_swap
from faceswap_jobs.models import JobRecord, JobState
from faceswap_jobs.worker.deadline import expire_if_late
from faceswap_jobs.worker.runtime import Runtime, runtime_for
from faceswap_jobs.worker.stranded import StrandedMessages

log = logging.getLogger(__name__)

TICK_S = 0.5
CLAIM_S = 60.0
"""How long a claimed job is hidden from other schedulers while this one sends it."""
BATCH = 500
"""Most jobs sent or released per tick, so one tick stays short."""
SWEEP_EVERY_S = 5.0
UNCLAIMED_AFTER_LEASES = 2
"""A sent message no worker took for this many lease lifetimes (60 s by default), its queue
empty, was lost: a live worker takes a message within seconds of it reaching the front."""
"""Seconds between looks for messages a worker left behind (`worker.stranded`)."""


class Scheduler:
    def __init__(self, app: Celery, rt: Runtime) -> None:
        self.app, self.rt = app, rt
        queues = (rt.settings.interactive_queue, rt.settings.bulk_queue)
        self.stranded = StrandedMessages(
            rt.redis, rt.jobs, queues, rt.settings.visibility_timeout_s
        )
        self._next_sweep = 0.0

    def tick(self) -> int:
        """One pass; returns how many jobs were sent back to their queue."""
        sent = 0
        now = time.time()
        for job_id, claim in self.rt.parking.claim_due(BATCH, CLAIM_S):
            record = self.rt.store.get(job_id)
            due = record is not None and not expire_if_late(self.rt, record)
            if due and record is not None and self.rt.jobs.requeue(job_id, now):
                self._send(record)
                sent += 1
            self.rt.parking.done(job_id, claim)
        self._release_paused()
        self.rt.settlement.reconcile()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_EVERY_S
            self.stranded.sweep()
            self._resend_lost(now)
            self.rt.limits.publish()
        return sent

    def _send(self, record: JobRecord) -> None:
        send_swap(self.app, record.id, record.request.body(), record.queue)
        self.rt.store.mark_sent(record.id)

    def _resend_lost(self, now: float) -> None:
        """Send again the messages Redis lost: a crash between a worker's BRPOP and its reply
        pops a message that no worker receives. A job still `queued`, sent more than
        two lease lifetimes ago, no worker having taken it, while its queue is empty (so it
        is not simply waiting its turn), has no message left. A resend that meets a message
        after all costs a redundant delivery, which the job's lease and state make harmless."""
        sent_before = now - UNCLAIMED_AFTER_LEASES * self.rt.settings.lease_ttl_s
        for job_id in self.rt.store.unclaimed(sent_before, BATCH):
            record = self.rt.store.get(job_id)
            if record is None or record.state is not JobState.QUEUED:
                self.rt.store.claim(job_id)
            elif self.rt.redis.llen(record.queue) == 0:
                log.warning("job %s: its message was lost; sending it again", job_id)
                self._send(record)

    def _release_paused(self) -> None:
        """Jobs paused by the breakers go when one closes (one job as the probe when a cool-down
        is over); jobs paused by a budget wait in sets of their own, and go as it gets room."""
        for scope, released in self.rt.limits.budget.release(BATCH).items():
            if released:
                log.info("budget %s has room: %d paused job(s) go back to their queue", scope,
                         released)  # fmt: skip
        _, paused = self.rt.parking.counts()
        if not paused:
            return
        state = self.rt.limits.release_state()
        if state == "all":
            released = self.rt.parking.release_paused(BATCH)
            log.info("a token's breaker is closed: %d paused job(s) go back to their queue",
                     released)  # fmt: skip
        elif state == "probe":
            self.rt.parking.release_paused(1)
            log.info("breaker cool-down over: one paused job goes as the probe")


class SchedulerStep(bootsteps.StartStopStep):
    """Runs `Scheduler.tick` every `TICK_S` in a daemon thread of the worker's main process."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        scheduler = Scheduler(worker.app, runtime_for(worker.app))
        self._thread = threading.Thread(
            target=self._run, args=(scheduler,), name="faceswap-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        runtime_for(worker.app).settlement.close()

    def _run(self, scheduler: Scheduler) -> None:
        while not self._stop.wait(TICK_S):
            try:
                scheduler.tick()
            except redis.RedisError as exc:
                log.warning("scheduler tick failed, trying again: %s", exc)
