"""A batch in Redis: counters in one hash, its rows packed in strings, rejects in a hash.

Progress must be O(1) for a batch of millions: every counter is a hash field that the enqueuer,
the workers and the settle scripts increment at the moment a row changes phase, so `batch show`
is one HGETALL. Two stamps in Redis's own clock, the first start and the latest end, give the
rate and the ETA without a time series. Rows are kept as 20 packed bytes each (job id as 16
bytes, line as 4), in input order, so an export can walk the batch without the input file and
without a Redis list of ids (~60 bytes a row).
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from faceswap_jobs.config import DEFAULT_JOB_TTL_S
from faceswap_jobs.jobs.counters import BATCH_COUNTING_LUA
from faceswap_jobs.keys import Keys

ROW = struct.Struct(">16sI")
"""A row as stored: job id (16 bytes, zero for a rejected row) and its line in the input."""
SEGMENT_ROWS = 1 << 20
"""Rows per packed string: 20 MB each, well within what Redis moves in one reply."""
NO_JOB = bytes(16)

COUNTERS = (
    "rows",
    "enqueued",
    "rejected",
    "started",
    "duplicates",
    "succeeded",
    "failed",
    "cancelled",
    "cancelled_queued",
)
ENDS = frozenset({"succeeded", "failed", "cancelled", "cancelled_queued"})
"""Counters of rows that reached an end; each increment also stamps `last_end_at`."""

COUNT = (
    BATCH_COUNTING_LUA
    + """
-- KEYS: [1] batch hash. ARGV: [1] counter, [2] increment, [3] 1 if the counter is an end
if ARGV[3] == '1' then
  count_batch_end(KEYS[1], ARGV[1])
  return 1
end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if ARGV[1] == 'started' then
  local t = redis.call('TIME')
  redis.call('HSETNX', KEYS[1], 'first_start_at', t[1] + t[2] / 1000000)
end
return 1
"""
)


@dataclass(frozen=True)
class BatchProgress:
    """One batch's counters and where its enqueue stands; every figure from one HGETALL."""

    name: str
    source: str
    created_at: float
    enqueue_done: bool
    cancelled_flag: bool
    counts: dict[str, int]
    cursor_offset: int
    cursor_line: int
    source_bytes: int = 0
    """Size of the file being enqueued (0 when unknown, as for `submit_many`)."""
    first_start_at: float | None = None
    """When a worker first took one of its rows (Redis clock)."""
    last_end_at: float | None = None
    """When the latest of its rows reached an end (Redis clock)."""
    read_at: float = 0.0
    """Redis clock when these counters were read, so rates never mix two machines' clocks."""

    @property
    def rows(self) -> int:
        return self.counts["rows"]

    @property
    def queued(self) -> int:
        """Enqueued rows no worker has taken yet."""
        c = self.counts
        return max(0, c["enqueued"] - c["started"] - c["duplicates"] - c["cancelled_queued"])

    @property
    def running(self) -> int:
        """Taken by a worker and not finished: calling, waiting to retry, paused, or waiting for a
        callback."""
        c = self.counts
        return max(0, c["started"] - c["succeeded"] - c["failed"] - c["cancelled"])

    @property
    def finished(self) -> int:
        c = self.counts
        return c["succeeded"] + c["failed"] + c["cancelled"] + c["cancelled_queued"]

    @property
    def cancelled(self) -> int:
        """Rows that ended cancelled, taken by a worker or not."""
        return self.counts["cancelled"] + self.counts["cancelled_queued"]

    @property
    def done(self) -> bool:
        """Nothing left to enqueue (all of it, or the batch was cancelled), queued or running."""
        enqueue_over = self.enqueue_done or self.cancelled_flag
        return enqueue_over and self.queued == 0 and self.running == 0

    @property
    def expected_rows(self) -> int:
        """Rows the batch will have to work on (rejected ones aside): while the file is still
        being read, an estimate from the share of it read so far."""
        c = self.counts
        known = c["enqueued"] - c["duplicates"]
        if self.enqueue_done or self.cancelled_flag or not self.source_bytes:
            return known
        if not self.cursor_offset:
            return known
        return max(known, round(known * self.source_bytes / self.cursor_offset))

    @property
    def worked(self) -> int:
        """Rows a worker finished (cancelled-while-queued rows cost no work and are left out)."""
        c = self.counts
        return c["succeeded"] + c["failed"] + c["cancelled"]

    @property
    def rate_per_s(self) -> float | None:
        """Rows finished per second, averaged from the first start to the latest end (to now
        while work remains); None until a row has finished."""
        if self.first_start_at is None or self.worked == 0:
            return None
        until = self.last_end_at if self.done and self.last_end_at else self.read_at
        elapsed = until - self.first_start_at
        return self.worked / elapsed if elapsed > 0 else None

    @property
    def eta_s(self) -> float | None:
        """Seconds until the rows enqueued so far are finished at `rate_per_s`; 0 when done.
        While the enqueue goes on, more rows will come: it is then a lower bound."""
        if self.done:
            return 0.0
        rate = self.rate_per_s
        return (self.queued + self.running) / rate if rate else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "created_at": self.created_at,
            "enqueue_done": self.enqueue_done,
            "cancel_requested": self.cancelled_flag,
            **self.counts,
            "queued": self.queued,
            "running": self.running,
            "done": self.done,
            "first_start_at": self.first_start_at,
            "last_end_at": self.last_end_at,
            "rate_per_s": self.rate_per_s,
            "eta_s": self.eta_s,
        }


class BatchStore:
    """Reads and writes batches; the enqueuer, workers and the CLI share it."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: float = DEFAULT_JOB_TTL_S) -> None:
        self._r = client
        self._keys = keys
        self._ttl_ms = int(ttl_s * 1000)
        """A batch's keys live as long as its jobs: refreshed at each write of its rows."""
        pool = client.connection_pool
        kwargs = dict(pool.connection_kwargs, decode_responses=False)
        self._bytes = redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )
        """Packed rows are binary: read them without decoding."""
        self._count = client.register_script(COUNT)

    def progress(self, name: str) -> BatchProgress | None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(self._keys.batch(name))
        pipe.time()
        raw, (seconds, micros) = pipe.execute()
        if not raw:
            return None
        return BatchProgress(
            name=name,
            source=raw.get("source", ""),
            created_at=float(raw.get("created_at", 0.0)),
            enqueue_done=raw.get("enqueue_done") == "1",
            cancelled_flag=raw.get("cancel_requested") == "1",
            counts={field: int(raw.get(field, 0)) for field in COUNTERS},
            cursor_offset=int(raw.get("cursor_offset", 0)),
            cursor_line=int(raw.get("cursor_line", 0)),
            source_bytes=int(raw.get("source_bytes", 0)),
            first_start_at=_stamp(raw.get("first_start_at")),
            last_end_at=_stamp(raw.get("last_end_at")),
            read_at=seconds + micros / 1e6,
        )

    def names(self, limit: int = 100) -> list[str]:
        """Batch names, newest first."""
        return list(self._r.zrevrange(self._keys.batch_index, 0, limit - 1))

    def source_of(self, name: str) -> tuple[str, str] | None:
        """(source, fingerprint) the batch was created from, or None for a new batch."""
        source, fingerprint = self._r.hmget(self._keys.batch(name), "source", "fingerprint")
        return None if source is None else (source, fingerprint or "")

    def create(self, name: str, source: str, fingerprint: str, source_bytes: int = 0) -> bool:
        """A new, empty batch; False when the name is taken (the caller resumes or refuses)."""
        now = time.time()
        created = self._r.hsetnx(self._keys.batch(name), "source", source)
        if created:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(self._keys.batch(name), mapping={"fingerprint": fingerprint,
                                                       "created_at": now,
                                                       "source_bytes": source_bytes})  # fmt: skip
            pipe.pexpire(self._keys.batch(name), self._ttl_ms)
            index = self._keys.batch_index
            pipe.zadd(index, {name: now})
            pipe.zremrangebyscore(index, "-inf", now - self._ttl_ms / 1000)
            pipe.pexpire(index, self._ttl_ms)
            pipe.execute()
        return bool(created)

    def record_rows(
        self,
        pipe: redis.client.Pipeline,
        name: str,
        first_position: int,
        rows: list[tuple[uuid.UUID | None, int]],
    ) -> None:
        """Append packed (job id, line) rows at `first_position` onwards to `pipe`."""
        position = first_position
        while rows:
            segment, offset = divmod(position, SEGMENT_ROWS)
            take = rows[: SEGMENT_ROWS - offset]
            packed = b"".join(
                ROW.pack(job_id.bytes if job_id else NO_JOB, line) for job_id, line in take
            )
            pipe.setrange(self._keys.batch_rows(name, segment), offset * ROW.size, packed)
            pipe.pexpire(self._keys.batch_rows(name, segment), self._ttl_ms)
            position += len(take)
            rows = rows[len(take) :]

    def keep(self, pipe: redis.client.Pipeline, name: str) -> None:
        """Append to `pipe` the refresh of the batch's own keys' time to live."""
        pipe.pexpire(self._keys.batch(name), self._ttl_ms)
        pipe.pexpire(self._keys.batch_rejects(name), self._ttl_ms)
        pipe.pexpire(self._keys.batch_ids(name), self._ttl_ms)

    def rows(
        self, name: str, start: int = 0, count: int | None = None, chunk: int = 5000
    ) -> Iterator[tuple[int, str | None, int]]:
        """(position, job id or None for a rejected row, line), in input order."""
        total = self.progress(name)
        end = total.rows if total else 0
        if count is not None:
            end = min(end, start + count)
        for first, data in self._packed(name, start, end, chunk):
            for i in range(len(data) // ROW.size):
                job, line = ROW.unpack_from(data, i * ROW.size)
                yield first + i, (None if job == NO_JOB else str(uuid.UUID(bytes=job))), line

    def find(self, job_id: str, chunk: int = 50_000) -> tuple[str, int, int] | None:
        """(batch, position, line) of a bulk job no worker has written a record for yet, looked
        up in the packed rows of recent batches; None when no batch holds it. A scan of the
        rows (20 bytes each), so for an operator's one-off question, not for a hot path."""
        try:
            wanted = uuid.UUID(job_id).bytes
        except ValueError:
            return None
        for name in self.names():
            progress = self.progress(name)
            for first, data in self._packed(name, 0, progress.rows if progress else 0, chunk):
                at = data.find(wanted)
                while at >= 0 and at % ROW.size:
                    at = data.find(wanted, at + 1)
                if at >= 0:
                    _, line = ROW.unpack_from(data, at)
                    return name, first + at // ROW.size, line
        return None

    def _packed(self, name: str, start: int, end: int, chunk: int) -> Iterator[tuple[int, bytes]]:
        """The packed rows from `start` to `end`, `chunk` rows a read (never across a segment),
        each with the position of its first row."""
        position = start
        while position < end:
            segment, offset = divmod(position, SEGMENT_ROWS)
            take = min(chunk, end - position, SEGMENT_ROWS - offset)
            data = self._bytes.getrange(
                self._keys.batch_rows(name, segment),
                offset * ROW.size,
                (offset + take) * ROW.size - 1,
            )
            yield position, data
            position += take

    def rejects(self, name: str, positions: list[int]) -> list[str | None]:
        if not positions:
            return []
        return list(self._r.hmget(self._keys.batch_rejects(name), positions))

    def cancel(self, name: str) -> bool:
        """Stop the batch: queued rows are dropped when a worker meets them; calls in flight end
        normally. False for an unknown batch."""
        if not self._r.exists(self._keys.batch(name)):
            return False
        self._r.hset(self._keys.batch(name), "cancel_requested", "1")
        return True

    def is_cancelled(self, name: str) -> bool:
        return self._r.hget(self._keys.batch(name), "cancel_requested") == "1"

    def count(self, name: str, field: str, by: int = 1) -> None:
        """Increment a counter; a first `started` and every end also stamp the time."""
        ends = "1" if field in ENDS else "0"
        if ends == "1" and by != 1:
            raise ValueError(f"{field} counts one row at a time")
        self._count(keys=[self._keys.batch(name)], args=[field, by, ends])


def _stamp(value: str | None) -> float | None:
    return float(value) if value else None
