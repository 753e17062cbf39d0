"""Telling Celery's result backend and Flower about jobs settled outside a worker's task.

A callback settles its job in the receiver, not in a Celery task, so nothing would write the
result Celery's `AsyncResult` reads or the event Flower shows. Doing both inline cost the receiver
about 1 ms of CPU per callback (a read-before-write in `store_result`, then a kombu publish) —
half its budget at 500 callbacks/s. The job record is the source of truth and is already settled
when an announcement is queued, so the announcer does this work off the request path: one thread
gathers what arrives within 20 ms, writes the results in one pipeline (the settle script already
guarantees one final state per job, so Celery's read-before-write is not needed) and sends the
events in one kombu publish batch.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.events.dispatcher import EventDispatcher
from kombu.exceptions import KombuError

log = logging.getLogger(__name__)

MAX_BATCH = 500
IDLE_WAIT_S = 0.5
GATHER_S = 0.02
"""After the first announcement, how long to gather more: batches instead of one flush each."""
CLOSE_WAIT_S = 5.0


@dataclass(frozen=True)
class Announcement:
    """A settled job: its Celery state and result (or exception), and the Flower event."""

    job_id: str
    event: str
    event_fields: dict[str, Any] = field(default_factory=dict)
    celery_state: str | None = None
    """None: an event only (a retry), the job has no final result yet."""
    result: Any = None


class Announcer:
    """Writes results and sends events for settled jobs, in the background, in batches."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._queue: queue.SimpleQueue[Announcement | None] = queue.SimpleQueue()
        self._events: EventDispatcher | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def announce(self, item: Announcement) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="announcer", daemon=True)
                self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        """Announce what is queued, then stop (a receiver or worker shutting down)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(CLOSE_WAIT_S)

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            final = [item for item in batch if item.celery_state is not None]
            if final:
                self._store(final)
            if batch:
                self._send_events(batch)
            if stop:
                return

    def _take(self) -> tuple[list[Announcement], bool]:
        try:
            first = self._queue.get(timeout=IDLE_WAIT_S)
        except queue.Empty:
            return [], False
        if first is None:
            return [], True
        batch = [first]
        time.sleep(GATHER_S)
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _store(self, batch: list[Announcement]) -> None:
        """Celery's own result format and pub/sub notice, as `RedisBackend.set` writes them."""
        backend = self._app.backend
        try:
            with backend.client.pipeline(transaction=False) as pipe:
                for item in batch:
                    meta = backend._get_result_meta(
                        result=item.result, state=item.celery_state, traceback=None, request=None
                    )
                    meta["task_id"] = item.job_id
                    key, value = backend.get_key_for_task(item.job_id), backend.encode(meta)
                    if backend.expires:
                        pipe.setex(key, backend.expires, value)
                    else:
                        pipe.set(key, value)
                    pipe.publish(key, value)
                pipe.execute()
        except (OSError, redis.RedisError) as exc:
            log.warning("could not store %d settled result(s) for Celery: %s", len(batch), exc)

    def _send_events(self, batch: list[Announcement]) -> None:
        """Best effort, in one kombu publish batch: Flower may miss events, jobs stay settled."""
        try:
            if self._events is None:
                self._events = self._app.events.Dispatcher(
                    connection=self._app.connection_for_write(),
                    hostname=f"settlement@{socket.gethostname()}",
                )
            producer = self._events.producer
            with producer.batch(max_size=MAX_BATCH):
                for item in batch:
                    fields = {"uuid": item.job_id, **item.event_fields}
                    self._events.publish(item.event, fields, producer)
        except (OSError, redis.RedisError, KombuError) as exc:
            log.warning("could not send %d event(s) to Flower: %s", len(batch), exc)
