"""One output row per input row: what became of every row of a batch, in input order.

Walks the batch's packed rows and reads the job records a chunk at a time in one pipeline, so a
batch of millions exports in constant memory. A row no worker has taken yet has no record: it is
`queued` (or `cancelled`, when its batch was); a rejected row carries its reason; a row that
repeated an earlier row's request shares that row's job and says so.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.keys import Keys

CHUNK = 2000
COLUMNS = (
    "line",
    "row_id",
    "job_id",
    "status",
    "source_image_url",
    "target_image_url",
    "image_url",
    "image_width",
    "image_height",
    "error_code",
    "error_message",
    "failure_reason",
    "calls",
    "duplicate_of_line",
    "metadata",
)
_FIELDS = ("state", "request", "result", "last_error", "failure_reason", "calls",
           "batch_position", "batch_line", "row_id", "metadata")  # fmt: skip


def export_rows(client: redis.Redis, keys: Keys, batch: str) -> Iterator[dict[str, Any]]:
    store = BatchStore(client, keys)
    progress = store.progress(batch)
    if progress is None:
        raise KeyError(f"no batch named {batch!r}")
    pending: list[tuple[int, str | None, int]] = []
    for row in store.rows(batch):
        pending.append(row)
        if len(pending) >= CHUNK:
            yield from _chunk(client, keys, store, batch, pending, progress.cancelled_flag)
            pending = []
    if pending:
        yield from _chunk(client, keys, store, batch, pending, progress.cancelled_flag)


def _chunk(
    client: redis.Redis,
    keys: Keys,
    store: BatchStore,
    batch: str,
    rows: list[tuple[int, str | None, int]],
    cancelled: bool,
) -> Iterator[dict[str, Any]]:
    pipe = client.pipeline(transaction=False)
    for _, job_id, _ in rows:
        if job_id is not None:
            pipe.hmget(keys.job(job_id), _FIELDS)
    records = iter(pipe.execute())
    rejected = [position for position, job_id, _ in rows if job_id is None]
    reasons = dict(zip(rejected, store.rejects(batch, rejected), strict=True))
    for position, job_id, line in rows:
        out: dict[str, Any] = dict.fromkeys(COLUMNS, "")
        out |= {"line": line, "job_id": job_id or ""}
        if job_id is None:
            reason = (reasons.get(position) or "").split("\t")
            out |= {"status": "rejected", "error_message": reason[1] if len(reason) > 1 else ""}
            yield out
            continue
        values = dict(zip(_FIELDS, next(records), strict=True))
        if values["state"] is None:
            out["status"] = "cancelled" if cancelled else "queued"
            yield out
            continue
        yield out | _from_record(values, position)


def _from_record(values: dict[str, Any], position: int) -> dict[str, Any]:
    request = json.loads(values["request"]) if values["request"] else {}
    result = json.loads(values["result"]) if values["result"] else {}
    error = json.loads(values["last_error"]) if values["last_error"] else {}
    state = values["state"]
    failed = state in ("failed", "cancelled")
    own_position = values["batch_position"]
    return {
        "row_id": values["row_id"] or "",
        "status": state,
        "source_image_url": request.get("source_image_url", ""),
        "target_image_url": request.get("target_image_url", ""),
        "image_url": result.get("image_url", "") if state == "succeeded" else "",
        "image_width": result.get("image_width") or "" if state == "succeeded" else "",
        "image_height": result.get("image_height") or "" if state == "succeeded" else "",
        "error_code": (error.get("code") or "") if failed else "",
        "error_message": (error.get("message") or "") if failed else "",
        "failure_reason": values["failure_reason"] or "",
        "calls": values["calls"] or "0",
        "duplicate_of_line": (
            values["batch_line"] or "" if own_position not in (None, str(position)) else ""
        ),
        "metadata": values["metadata"] or "",
    }


def write_export(client: redis.Redis, keys: Keys, batch: str, out: Path) -> int:
    """CSV or JSON Lines by the file's suffix; returns the rows written."""
    count = 0
    with out.open("w", newline="") as handle:
        if out.suffix.lower() in (".jsonl", ".ndjson"):
            for row in export_rows(client, keys, batch):
                handle.write(json.dumps(row) + "\n")
                count += 1
            return count
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in export_rows(client, keys, batch):
            writer.writerow(row)
            count += 1
    return count
