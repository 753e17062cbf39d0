"""How a job record is laid out in its Redis hash: the one place that knows its field names.

Scalars are stored as text and structured fields as JSON, so a Lua script can read and move
`state`, counters and leases without decoding anything, and an operator can read the hash with
`redis-cli HGETALL`.
"""

from __future__ import annotations

import json
from typing import Any

from faceswap_jobs.models import JobRecord

JSON_FIELDS = ("request", "metadata", "result", "last_error")
SENT = "sent"
"""'1' once the job's message went to the broker: a record left unsent is sent again."""
SUMMARY_FIELDS = ("state", "request", "result", "last_error", "failure_reason", "calls",
                  "attempts", "queue", "batch", "batch_position", "batch_line", "row_id",
                  "metadata", "billed_calls", "possibly_billed_calls")  # fmt: skip
"""What an export, a dead-letter listing or a replay needs of each job: read with one HMGET per
job, history left out. `billed_calls` and `possibly_billed_calls` are counted by the ending
script (`jobs.spend`), not part of `JobRecord`."""
_INT_FIELDS = frozenset({"calls", "attempts", "batch_position", "batch_line", "billed_calls",
                         "possibly_billed_calls"})  # fmt: skip
_COUNTERS = ("calls", "attempts", "billed_calls", "possibly_billed_calls")


def encode(record: JobRecord) -> dict[str, str]:
    data = record.model_dump(mode="json", exclude={"history"}, exclude_none=True)
    encoded = {}
    for name, value in data.items():
        encoded[name] = json.dumps(value) if name in JSON_FIELDS else str(value)
    encoded[SENT] = "0"
    return encoded


def decode(raw: dict[str, str], history: list[str]) -> JobRecord:
    data: dict[str, Any] = {k: v for k, v in raw.items() if k != SENT and v != ""}
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    data["history"] = [json.loads(item) for item in history]
    return JobRecord.model_validate(data)


def decode_summary(values: list[str | None]) -> dict[str, Any] | None:
    """`SUMMARY_FIELDS` as read by HMGET, typed (JSON decoded, counters as ints); None when the
    job has no record."""
    raw = dict(zip(SUMMARY_FIELDS, values, strict=True))
    if raw["state"] is None:
        return None
    summary: dict[str, Any] = {}
    for name, value in raw.items():
        if value in (None, ""):
            summary[name] = {} if name in JSON_FIELDS else None
        elif name in JSON_FIELDS:
            summary[name] = json.loads(value)
        elif name in _INT_FIELDS:
            summary[name] = int(value)
        else:
            summary[name] = value
    for name in _COUNTERS:
        summary[name] = summary[name] or 0
    return summary
