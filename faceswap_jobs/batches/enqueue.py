"""Putting a batch's rows on the bulk queue: pipelined, back-pressured, resumable.

Each chunk of rows is one MULTI/EXEC: the messages, the packed rows, the rejects, the counters
and the cursor (where in the input the next chunk starts) commit together or not at all. A
backfill that dies mid-file therefore left whole chunks behind it, and the next run starts at
the cursor: no row is enqueued twice and none is skipped. Job ids are derived from the batch and
the row's identity, so even a row that reaches a worker twice (a duplicate line, a redelivery)
is one job and at most one call.

A row that repeats an earlier row's `id` must ask for the same thing (URLs, timeout, metadata):
the batch keeps a short fingerprint per `id`, written in the chunk's transaction, and a row whose
request differs is rejected with the line it clashes with instead of being merged into that job.
Every message is encoded to UTF-8 before the transaction, so a row that cannot be (a lone
surrogate the validators missed) becomes a reject rather than failing the chunk on every resume.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from faceswap_jobs.batches.messages import Origin, swap_message
from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.keys import Keys
from faceswap_jobs.validation import request_fingerprint

log = logging.getLogger(__name__)

BATCH_NAMESPACE = uuid.UUID("0c7f3a9e-52d1-4f0e-8b2a-6e1d9c4b7a35")
"""uuid5 namespace of bulk job ids: batch name + row identity -> always the same job."""
LOCK_TTL_S = 30
DRAIN_POLL_S = 0.25
MAX_REJECT_RAW = 300


@dataclass(frozen=True)
class Item:
    """One input row as the enqueuer needs it: a valid request, or a reason it was rejected."""

    line: int
    key: str
    """Identity: the row's `id`, or a hash of its request."""
    request: dict[str, Any] | None
    """None for a rejected row."""
    metadata: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    raw: str = ""
    end_offset: int = 0
    next_line: int = 0
    row_id: str | None = None
    """The `id` column as given, carried to the job so results join back on it."""


@dataclass
class Chunked:
    """What one run did; `rows` counts every input row it consumed, rejected ones included."""

    rows: int = 0
    enqueued: int = 0
    rejected: int = 0
    waited_s: float = 0.0
    high_water_seen: int = 0
    last_offset: int = 0
    """Where in the input the last committed chunk ended (for a progress bar)."""


class BatchLocked(RuntimeError):
    """Another backfill is enqueueing into this batch right now."""


class BatchCancelled(RuntimeError):
    """The batch was cancelled while rows were being enqueued: no more are (`done` says how many
    were before the cancel)."""

    def __init__(self, batch: str, done: Chunked) -> None:
        super().__init__(
            f"batch {batch} was cancelled: stopped after {done.enqueued:,} rows enqueued "
            f"({done.rows:,} read); the rest of the file was not enqueued"
        )
        self.batch, self.done = batch, done


TAKE_OVER = """
-- KEYS: [1] lock; ARGV: [1] the dead holder, [2] the new holder, [3] ttl (s)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


def _dead_here(holder: str) -> bool:
    """The lock's holder ran on this host and its process is gone (a kill -9, a crash)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def bulk_job_uuid(batch: str, key: str) -> uuid.UUID:
    return uuid.uuid5(BATCH_NAMESPACE, f"{batch}\x00{key}")


class Enqueuer:
    """Publishes rows in chunks of `chunk_rows`, holding the queue under `high_water` messages."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        batches: BatchStore,
        queue: str,
        *,
        chunk_rows: int = 2000,
        high_water: int = 200_000,
        low_water: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if chunk_rows < 1 or high_water < 1:
            raise ValueError("chunk_rows and high_water must be positive")
        self._r, self._keys, self._batches, self._queue = client, keys, batches, queue
        self.chunk_rows = max(1, min(chunk_rows, high_water // 4))
        """A chunk is at most a quarter of the high-water mark, so the mark holds."""
        self.high_water = high_water
        self.low_water = low_water if low_water is not None else int(high_water * 0.8)
        self._sleep = sleep
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._take_over = client.register_script(TAKE_OVER)

    def run(
        self,
        batch: str,
        items: Iterable[Item],
        *,
        first_position: int,
        on_chunk: Callable[[Chunked, list[Item]], None] | None = None,
        on_wait: Callable[[int], None] | None = None,
    ) -> Chunked:
        """Enqueue `items` (the rows after the batch's cursor) and mark the batch complete."""
        self._lock(batch)
        done = Chunked()
        try:
            chunk: list[Item] = []
            for item in items:
                chunk.append(item)
                if len(chunk) >= self.chunk_rows:
                    self._flush(batch, chunk, first_position + done.rows, done, on_wait)
                    if on_chunk:
                        on_chunk(done, chunk)
                    chunk = []
            if chunk:
                self._flush(batch, chunk, first_position + done.rows, done, on_wait)
                if on_chunk:
                    on_chunk(done, chunk)
            self._r.hset(self._keys.batch(batch), "enqueue_done", "1")
        finally:
            self._unlock(batch)
        return done

    def _flush(
        self,
        batch: str,
        chunk: list[Item],
        position: int,
        done: Chunked,
        on_wait: Callable[[int], None] | None,
    ) -> None:
        self._hold_back(batch, chunk, done, on_wait)
        if self._batches.is_cancelled(batch):
            raise BatchCancelled(batch, done)
        fingerprints = self._check_repeated_ids(batch, chunk)
        messages: list[bytes] = []
        rows: list[tuple[uuid.UUID | None, int]] = []
        rejects: dict[int, str] = {}
        for i, item in enumerate(chunk):
            if item.request is not None:
                job_uuid = bulk_job_uuid(batch, item.key)
                job_id = str(job_uuid)
                origin = Origin(batch, position + i, item.line, item.row_id)
                try:
                    messages.append(
                        swap_message(job_id, item.request, origin, self._queue,
                                     metadata=item.metadata,
                                     delivery_tag=f"{job_id}.{position + i}").encode()
                    )  # fmt: skip
                except UnicodeEncodeError:
                    fingerprints.pop(item.key, None)
                    item = chunk[i] = _rejected(item, "not encodable as UTF-8 (a lone surrogate)")
                else:
                    rows.append((job_uuid, item.line))
                    continue
            rows.append((None, item.line))
            rejects[position + i] = _storable(
                f"{item.line}\t{_one_line(item.reason)}\t{_one_line(item.raw[:MAX_REJECT_RAW])}"
            )
        last = chunk[-1]
        key = self._keys.batch(batch)
        pipe = self._r.pipeline(transaction=True)
        if messages:
            pipe.lpush(self._queue, *messages)
        self._batches.record_rows(pipe, batch, position, rows)
        if rejects:
            pipe.hset(self._keys.batch_rejects(batch), mapping=rejects)
        if fingerprints:
            pipe.hset(self._keys.batch_ids(batch), mapping=fingerprints)
        pipe.hincrby(key, "rows", len(chunk))
        pipe.hincrby(key, "enqueued", len(messages))
        pipe.hincrby(key, "rejected", len(rejects))
        pipe.hset(key, mapping={"cursor_offset": last.end_offset, "cursor_line": last.next_line})
        pipe.expire(self._keys.batch_lock(batch), LOCK_TTL_S)
        self._batches.keep(pipe, batch)
        pipe.execute()
        done.rows += len(chunk)
        done.enqueued += len(messages)
        done.rejected += len(rejects)
        done.last_offset = last.end_offset

    def _check_repeated_ids(self, batch: str, chunk: list[Item]) -> dict[str, str]:
        """Turn rows that reuse an earlier row's `id` for a different request into rejects (in
        `chunk`, in place); returns the fingerprints of the chunk's new ids, to be stored with
        it. The same `id` with the same request stays a duplicate: one job, no second call."""
        with_id = [i for i, item in enumerate(chunk) if item.request is not None and item.row_id]
        if not with_id:
            return {}
        known = self._r.hmget(self._keys.batch_ids(batch), [chunk[i].key for i in with_id])
        seen: dict[str, str] = {}
        new: dict[str, str] = {}
        for i, stored in zip(with_id, known, strict=True):
            item = chunk[i]
            assert item.request is not None
            mine = request_fingerprint(item.request, item.metadata)
            earlier = seen.get(item.key) or stored
            if earlier is None:
                seen[item.key] = new[item.key] = f"{mine}:{item.line}"
                continue
            fingerprint, _, line = earlier.partition(":")
            if fingerprint != mine:
                chunk[i] = _rejected(
                    item,
                    f"id {item.row_id!r:.80} was already used on line {line} for a different "
                    "request (URLs, timeout or metadata differ)",
                )
        return new

    def _hold_back(
        self,
        batch: str,
        chunk: list[Item],
        done: Chunked,
        on_wait: Callable[[int], None] | None,
    ) -> None:
        """Back-pressure: with the queue near `high_water`, wait until it drains to `low_water`,
        so Redis holds at most `high_water` bulk messages whatever the file's size."""
        depth = self._r.llen(self._queue)
        done.high_water_seen = max(done.high_water_seen, depth)
        if depth + len(chunk) <= self.high_water:
            return
        started = time.monotonic()
        while depth > self.low_water or depth + len(chunk) > self.high_water:
            if self._batches.is_cancelled(batch):
                raise BatchCancelled(batch, done)
            if on_wait:
                on_wait(depth)
            self._sleep(DRAIN_POLL_S)
            self._r.expire(self._keys.batch_lock(batch), LOCK_TTL_S)
            depth = self._r.llen(self._queue)
        done.waited_s += time.monotonic() - started

    def _lock(self, batch: str) -> None:
        key = self._keys.batch_lock(batch)
        if self._r.set(key, self._holder, nx=True, ex=LOCK_TTL_S):
            return
        holder = self._r.get(key) or ""
        if _dead_here(holder) and self._take_over(keys=[key], args=[holder, self._holder,
                                                                     LOCK_TTL_S]):  # fmt: skip
            log.info("batch %s: took over the lock of a backfill that died (%s)", batch, holder)
            return
        ttl = self._r.ttl(key)
        raise BatchLocked(
            f"batch {batch!r} is being enqueued by another backfill ({holder}); if that one "
            f"is gone, its lock lapses in {max(ttl, 0)} s"
        )

    def _unlock(self, batch: str) -> None:
        if self._r.get(self._keys.batch_lock(batch)) == self._holder:
            self._r.delete(self._keys.batch_lock(batch))


def _rejected(item: Item, reason: str) -> Item:
    """`item` as a reject: its request is kept only as the row's text in the rejects file."""
    shown = {"id": item.row_id, **(item.request or {})}
    if item.metadata:
        shown["metadata"] = item.metadata
    raw = item.raw or json.dumps(shown, ensure_ascii=False)[:MAX_REJECT_RAW]
    return replace(item, key="", request=None, metadata={}, reason=reason, raw=raw)


def _one_line(text: str) -> str:
    """Tabs and line breaks separate a stored reject's fields: none may be inside one."""
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _storable(text: str) -> str:
    """`text` as Redis can be sent it: a lone surrogate is written as its escape."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text
