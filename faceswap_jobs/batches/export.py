"""One output row per input row: what became of every row of a batch, in input order.

Walks the batch's packed rows and reads the job records a chunk at a time in one pipeline, so a
batch of millions exports in constant memory. A row no worker has taken yet has no record: it is
`queued` (or `cancelled`, when its batch was); a rejected row carries its reason; a row that
repeated an earlier row's request shares that row's job and says so.

Rows are typed (numbers are numbers, what a row does not have is None, metadata is an object), as
`Batch.results()` and JSON Lines give them; CSV writes None as an empty cell, metadata as JSON
and quotes cells a spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.jobs.store import JobStore

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
    "billed_calls",
    "possibly_billed_calls",
    "duplicate_of_line",
    "metadata",
)


def export_rows(jobs: JobStore, batch: str) -> Iterator[dict[str, Any]]:
    store = BatchStore(jobs.client, jobs.keys)
    progress = store.progress(batch)
    if progress is None:
        raise KeyError(f"no batch named {batch!r}")
    pending: list[tuple[int, str | None, int]] = []
    for row in store.rows(batch):
        pending.append(row)
        if len(pending) >= CHUNK:
            yield from _chunk(jobs, store, batch, pending, progress.cancelled_flag)
            pending = []
    if pending:
        yield from _chunk(jobs, store, batch, pending, progress.cancelled_flag)


def _chunk(
    jobs: JobStore,
    store: BatchStore,
    batch: str,
    rows: list[tuple[int, str | None, int]],
    cancelled: bool,
) -> Iterator[dict[str, Any]]:
    summaries = iter(jobs.summaries([job_id for _, job_id, _ in rows if job_id is not None]))
    rejected = [position for position, job_id, _ in rows if job_id is None]
    reasons = dict(zip(rejected, store.rejects(batch, rejected), strict=True))
    for position, job_id, line in rows:
        out: dict[str, Any] = dict.fromkeys(COLUMNS)
        out |= {"line": line, "job_id": job_id}
        if job_id is None:
            reason = (reasons.get(position) or "").split("\t")
            out |= {"status": "rejected", "error_message": reason[1] if len(reason) > 1 else None}
            yield out
            continue
        summary = next(summaries)
        if summary is None:
            out["status"] = "cancelled" if cancelled else "queued"
            yield out
            continue
        yield out | _from_summary(summary, position)


def _from_summary(job: dict[str, Any], position: int) -> dict[str, Any]:
    request, result, error = job["request"], job["result"], job["last_error"]
    state = job["state"]
    succeeded = state == "succeeded"
    failed = state in ("failed", "cancelled")
    own_position = job["batch_position"]
    return {
        "row_id": job["row_id"] or None,
        "status": state,
        "source_image_url": request.get("source_image_url"),
        "target_image_url": request.get("target_image_url"),
        "image_url": result.get("image_url") if succeeded else None,
        "image_width": result.get("image_width") if succeeded else None,
        "image_height": result.get("image_height") if succeeded else None,
        "error_code": error.get("code") if failed else None,
        "error_message": error.get("message") if failed else None,
        "failure_reason": job["failure_reason"] or None,
        "calls": int(job["calls"] or 0),
        "billed_calls": job["billed_calls"],
        "possibly_billed_calls": job["possibly_billed_calls"],
        "duplicate_of_line": (job["batch_line"] if own_position not in (None, position) else None),
        "metadata": job["metadata"] or None,
    }


def write_export(jobs: JobStore, batch: str, out: Path) -> int:
    """CSV or JSON Lines by the file's suffix; returns the rows written."""
    count = 0
    with out.open("w", newline="") as handle:
        if out.suffix.lower() in (".jsonl", ".ndjson"):
            for row in export_rows(jobs, batch):
                handle.write(json.dumps(row) + "\n")
                count += 1
            return count
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in export_rows(jobs, batch):
            writer.writerow({name: csv_cell(value) for name, value in row.items()})
            count += 1
    return count


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell starting with one of these as a formula (CSV injection)."""


def csv_cell(value: Any) -> str:
    """A typed export value as CSV text: nothing is an empty cell, an object is its JSON."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return inert_cell(json.dumps(value, ensure_ascii=False))
    return inert_cell(str(value))


def inert_cell(value: Any) -> Any:
    """`value`, with a text that a spreadsheet would run as a formula quoted by a leading `'`
    (row ids, URLs and error text come from input files and API answers)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
