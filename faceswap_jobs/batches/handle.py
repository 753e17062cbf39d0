"""`submit_many(iterable, batch=...) -> Batch`: the Python face of batches.

The same machinery as `faceswap-jobs backfill`, for rows an application already has in memory
or streams from elsewhere: invalid items are rejected with a reason (and exported as such),
valid ones are enqueued in pipelined chunks under the bulk queue's high-water mark. Calling it
again with the same batch name and the same iterable continues after the rows already enqueued.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis

from faceswap_jobs.batches.enqueue import Enqueuer, Item
from faceswap_jobs.batches.export import export_rows
from faceswap_jobs.batches.messages import Origin, swap_message
from faceswap_jobs.batches.store import BatchProgress, BatchStore
from faceswap_jobs.config import Settings
from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import SwapRequest, check_metadata
from faceswap_jobs.runtime import redis_client

MAX_ROW_ID_CHARS = 256
REQUEUE = """
-- KEYS: [1] job hash, [2] dead-letter sorted set
-- ARGV: [1] now, [2] job ttl (ms), [3] batch key prefix
-- A failed job of a batch goes back to the queue with a fresh retry budget and deadline.
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'retried_at', ARGV[1],
  'paused_s', 0, 'updated_at', ARGV[1], 'failure_reason', '', 'wait_reason', '')
redis.call('HDEL', KEYS[1], 'paused_at')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch then redis.call('HINCRBY', ARGV[3] .. batch, 'failed', -1) end
return 1
"""


class Batch:
    """A handle on one batch; every call reads Redis afresh."""

    def __init__(self, name: str, settings: Settings, client: redis.Redis) -> None:
        self.name = name
        self._settings = settings
        self._r = client
        self._keys = Keys(settings.key_prefix)
        self._store = BatchStore(client, self._keys)

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
        return export_rows(self._r, self._keys, self.name)

    def cancel(self) -> bool:
        return self._store.cancel(self.name)

    def retry_failed(self, chunk: int = 1000) -> int:
        """Send the batch's failed jobs again, each with a fresh retry budget; returns how many.
        A row never has two calls in flight: only a job that ended `failed` moves."""
        requeue = self._r.register_script(REQUEUE)
        ttl_ms = int(self._settings.job_ttl_s * 1000)
        sent = 0
        ids: list[str] = []
        for _, job_id, _ in self._store.rows(self.name):
            if job_id is not None:
                ids.append(job_id)
            if len(ids) >= chunk:
                sent += self._requeue(requeue, ids, ttl_ms)
                ids = []
        if ids:
            sent += self._requeue(requeue, ids, ttl_ms)
        return sent

    def _requeue(self, requeue: Any, ids: list[str], ttl_ms: int) -> int:
        pipe = self._r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self._keys.job(job_id), "state", "request", "batch_position",
                       "batch_line", "row_id", "metadata")  # fmt: skip
        failed = [(job_id, values) for job_id, values in zip(ids, pipe.execute(), strict=True)
                  if values[0] == "failed"]  # fmt: skip
        messages: list[str] = []
        now = time.time()
        for job_id, (_, request, position, line, row_id, metadata) in failed:
            keys = [self._keys.job(job_id), self._keys.dead_letters]
            if not requeue(keys=keys, args=[now, ttl_ms, self._keys.batch("")]):
                continue
            origin = Origin(self.name, int(position or 0), int(line or 0), row_id or None)
            messages.append(
                swap_message(job_id, json.loads(request), origin, self._settings.bulk_queue,
                             metadata=json.loads(metadata) if metadata else None,
                             delivery_tag=f"{job_id}.retry.{now:.6f}")
            )  # fmt: skip
        if messages:
            self._r.lpush(self._settings.bulk_queue, *messages)
        return len(messages)


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
    client = client or redis_client(settings)
    keys = Keys(settings.key_prefix)
    store = BatchStore(client, keys)
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


def _item(number: int, raw: Mapping[str, Any], max_timeout_s: float) -> Item:
    if not isinstance(raw, Mapping):
        raise InvalidSwapRequest(f"item must be a mapping, not {type(raw).__name__}")
    fields = {k: raw.get(k) for k in ("source_image_url", "target_image_url", "timeout")}
    request = SwapRequest.parse(fields)
    if request.timeout is not None and request.timeout >= max_timeout_s:
        raise InvalidSwapRequest(
            f"timeout ({request.timeout:g} s) must be below the workers' read timeout "
            f"({max_timeout_s:g} s)"
        )
    metadata = check_metadata(raw.get("metadata"))
    row_id = raw.get("id")
    if row_id is not None:
        row_id = str(row_id).strip()
        if not row_id or len(row_id) > MAX_ROW_ID_CHARS:
            raise InvalidSwapRequest(f"id must be 1 to {MAX_ROW_ID_CHARS} characters")
    body = request.body()
    key = f"id:{row_id}" if row_id else "req:" + _request_hash(body)
    return Item(line=number, key=key, request=body, metadata=metadata, row_id=row_id)


def _request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
