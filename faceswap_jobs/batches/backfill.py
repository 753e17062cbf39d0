"""`faceswap-jobs backfill FILE --batch NAME`: a file of rows into a batch, resumably.

The batch remembers the file it came from (path and a fingerprint of its head) and a cursor (byte
offset and line of the next row). Running the same command again after a crash or Ctrl-C
continues at the cursor; a different file under the same batch name is refused rather than mixed
in. Rejected rows go to a rejects file (line, reason, the row as read) and into the batch, so
an export still has one row per input row.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from faceswap_jobs.batches.enqueue import Chunked, Enqueuer, Item
from faceswap_jobs.batches.rows import Reject, Row, read_rows
from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.config import Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.validation import check_batch_name

FINGERPRINT_BYTES = 1 << 20
REJECT_COLUMNS = ("line", "reason", "row")


class BatchSourceMismatch(ValueError):
    """The batch name is taken by a different input file."""


@dataclass(frozen=True)
class BackfillResult:
    batch: str
    resumed_at_line: int | None
    """None for a fresh start; else the line this run continued from."""
    already_complete: bool
    chunked: Chunked
    rejects_path: Path | None


def fingerprint(path: Path) -> str:
    """Identifies a file by its first MiB: stable while rows are appended, changed by an edit
    of what was already enqueued (which a resume must not silently mix)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:32]


def items_from(rows: Iterator[Row | Reject]) -> Iterator[Item]:
    for row in rows:
        if isinstance(row, Reject):
            yield Item(line=row.line, key="", request=None, reason=row.reason, raw=row.raw,
                       end_offset=row.end_offset, next_line=row.next_line)  # fmt: skip
            continue
        yield Item(
            line=row.line,
            key=row.key,
            request=row.request.body(),
            metadata=row.metadata,
            end_offset=row.end_offset,
            next_line=row.next_line,
            row_id=row.key.removeprefix("id:") if row.key.startswith("id:") else None,
        )


def dry_run(
    settings: Settings, path: Path, rejects_path: Path, on_row: Callable[[int], None]
) -> tuple[int, int]:
    """Validate every row without touching Redis: (rows, rejected)."""
    rows = rejected = 0
    with rejects_path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(REJECT_COLUMNS)
        for row in read_rows(path, max_timeout_s=settings.read_timeout_s):
            rows += 1
            if isinstance(row, Reject):
                rejected += 1
                writer.writerow((row.line, row.reason, row.raw))
            if rows % 10_000 == 0:
                on_row(rows)
    on_row(rows)
    return rows, rejected


def backfill(
    settings: Settings,
    client: redis.Redis,
    path: Path,
    batch: str,
    rejects_path: Path,
    *,
    chunk_rows: int = 2000,
    on_chunk: Callable[[Chunked], None] | None = None,
    on_wait: Callable[[int], None] | None = None,
) -> BackfillResult:
    check_batch_name(batch)
    keys = Keys(settings.key_prefix)
    batches = BatchStore(client, keys, settings.job_ttl_s)
    source, print_ = str(path.resolve()), fingerprint(path)
    if not batches.create(batch, source, print_, path.stat().st_size):
        known = batches.source_of(batch)
        if known is not None and known != (source, print_):
            raise BatchSourceMismatch(
                f"batch {batch!r} was filled from {known[0]} (fingerprint {known[1]}); "
                f"{path} is different: use another --batch name"
            )
    progress = batches.progress(batch)
    assert progress is not None  # created above or found
    if progress.enqueue_done:
        return BackfillResult(batch, progress.cursor_line, True, Chunked(), None)
    resumed = progress.cursor_line if progress.rows else None
    _rewrite_rejects(keys, client, batch, rejects_path)
    enqueuer = Enqueuer(
        client,
        keys,
        batches,
        settings.bulk_queue,
        chunk_rows=chunk_rows,
        high_water=settings.bulk_high_water,
    )
    rows = read_rows(
        path,
        start_offset=progress.cursor_offset,
        start_line=progress.cursor_line or None,
        max_timeout_s=settings.read_timeout_s,
    )
    with rejects_path.open("a", newline="") as out:
        writer = csv.writer(out)

        def committed(done: Chunked, chunk: list[Item]) -> None:
            for item in chunk:
                if item.request is None:
                    writer.writerow((item.line, item.reason, item.raw))
            out.flush()
            if on_chunk:
                on_chunk(done)

        chunked = enqueuer.run(batch, items_from(rows), first_position=progress.rows,
                               on_chunk=committed, on_wait=on_wait)  # fmt: skip
    return BackfillResult(batch, resumed, False, chunked, rejects_path)


def _rewrite_rejects(keys: Keys, client: redis.Redis, batch: str, rejects_path: Path) -> None:
    """The rejects file as the batch has them so far: a run that died after committing a chunk
    but before writing its rejects leaves the file short, never the batch."""
    stored: list[tuple[int, str]] = []
    for position, value in client.hscan_iter(keys.batch_rejects(batch)):
        stored.append((int(position), value))
    stored.sort()
    with rejects_path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(REJECT_COLUMNS)
        for _, value in stored:
            line, reason, raw = [*value.split("\t", 2), "", ""][:3]
            writer.writerow((line, reason, raw))
