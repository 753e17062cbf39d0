"""`submit_many(iterable, batch=...) -> Batch`: the Python face of batches.

The same machinery as `faceswap-jobs backfill`, for rows an application already has in memory
or streams from elsewhere: invalid items are rejected with a reason (and exported as such),
valid ones are enqueued in pipelined chunks under the bulk queue's high-water mark. Calling it
again with the same batch name and the same iterable continues after the rows already enqueued.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis

from faceswap_jobs.batches.enqueue import Enqueuer, Item
from faceswap_jobs.batches.export import export_rows
from faceswap_jobs.batches.store import BatchProgress, BatchStore
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import reaching_redis, redis_client
from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.jobs.store import job_store
from faceswap_jobs.keys import Keys
from faceswap_jobs.producer.replay import FailedJobs
from faceswap_jobs.validation import (
    check_batch_name,
    check_identifier,
    check_metadata,
    identity_key,
    swap_request,
)


class Batch:
    """A handle on one batch; every call reads Redis afresh."""

    def __init__(self, name: str, settings: Settings, client: redis.Redis) -> None:
        self.name = name
        self._settings = settings
        self._r = client
        self._keys = Keys(settings.key_prefix)
        self._store = BatchStore(client, self._keys, settings.job_ttl_s)
        self._jobs = job_store(settings, client)

    def __repr__(self) -> str:
        return f"Batch({self.name!r})"

    def progress(self) -> BatchProgress:
        progress = self._store.progress(self.name)
        if progress is None:
            raise KeyError(f"no batch named {self.name!r}")
        return progress

    def wait(self, timeout: float | None = None, poll_s: float = 1.0) -> BatchProgress:
        """Until nothing is queued or running; raises TimeoutError with the progress so far."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            progress = self.progress()
            if progress.done:
                return progress
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {self.name} not done after {timeout} s: {progress}")
            time.sleep(poll_s)

    def results(self) -> Iterator[dict[str, Any]]:
        """One dict per input row, in input order (the columns of `batch export`)."""
        return export_rows(self._jobs, self.name)

    def cancel(self) -> bool:
        return self._store.cancel(self.name)

    def retry_failed(self) -> int:
        """Send the batch's failed jobs again, each with a fresh retry budget; returns how many.
        A row never has two calls in flight: only a job that ended `failed` moves."""
        rows = (job_id for _, job_id, _ in self._store.rows(self.name) if job_id is not None)
        return FailedJobs(self._settings, self._r).resend(rows).sent


def submit_many(
    items: Iterable[Mapping[str, Any]],
    *,
    batch: str,
    settings: Settings | None = None,
    client: redis.Redis | None = None,
) -> Batch:
    """Enqueue every valid item into `batch` on the bulk queue; invalid ones become rejects.

    An item is a mapping with `source_image_url`, `target_image_url` and optionally `id`,
    `timeout` and `metadata`. The same `id` (or, without one, the same request) in one batch is
    one job and at most one call."""
    settings = settings or Settings()
    check_batch_name(batch)
    with reaching_redis(settings.redis_url):
        return _submit_many(items, batch, settings, client or redis_client(settings))


def _submit_many(
    items: Iterable[Mapping[str, Any]], batch: str, settings: Settings, client: redis.Redis
) -> Batch:
    keys = Keys(settings.key_prefix)
    store = BatchStore(client, keys, settings.job_ttl_s)
    store.create(batch, "python:submit_many", "")
    progress = store.progress(batch)
    assert progress is not None
    if not progress.enqueue_done:
        enqueuer = Enqueuer(client, keys, store, settings.bulk_queue,
                            high_water=settings.bulk_high_water)  # fmt: skip
        rows = _items(items, settings.read_timeout_s)
        for _ in range(progress.rows):
            next(rows, None)  # resuming: these rows were enqueued by an earlier call
        enqueuer.run(batch, rows, first_position=progress.rows)
    return Batch(batch, settings, client)


def _items(items: Iterable[Mapping[str, Any]], max_timeout_s: float) -> Iterator[Item]:
    for number, raw in enumerate(items, start=1):
        try:
            yield _item(number, raw, max_timeout_s)
        except InvalidSwapRequest as exc:
            text = repr(raw)[:300]
            yield Item(line=number, key="", request=None, reason=exc.message, raw=text)


def _item(number: int, raw: Mapping[str, Any], read_timeout_s: float) -> Item:
    if not isinstance(raw, Mapping):
        raise InvalidSwapRequest(f"item must be a mapping, not {type(raw).__name__}")
    request = swap_request(raw, read_timeout_s=read_timeout_s)
    metadata = check_metadata(raw.get("metadata"))
    row_id = check_identifier(raw.get("id"), "id")
    body = request.body()
    key = identity_key(row_id, body)
    return Item(line=number, key=key, request=body, metadata=metadata, row_id=row_id)
