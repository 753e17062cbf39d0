"""The dead-letter queue as an operator reads it: failed jobs with their error, filtered by
error code, batch and failure time.

The queue holds only job ids scored by failure time; everything else comes from each job's record,
read in one pipeline per page. Filtering happens here, on the records, so a page of ids can yield
fewer entries than it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from faceswap_jobs.jobs.store import DEAD_LETTER_PAGE, JobStore

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """A point in time as a Unix time: a duration back from `now` (`90s`, `30m`, `2h`, `1d`,
    `1w`, or several: `1h30m`) or an ISO 8601 time (UTC unless it names its offset).
    ValueError for anything else."""
    value = text.strip().lower()
    if value and _DURATION.sub("", value).strip() == "":
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION.findall(value))
        return now - seconds
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r:.80} is neither a duration (30m, 2h, 1d) nor an ISO time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def age(timestamp: float, now: float) -> str:
    """`3m ago`, `2h ago`, `4d ago`: how long ago, at the precision a person reads."""
    seconds = int(max(0.0, now - timestamp))
    for unit, size in (("d", 172800), ("h", 7200), ("m", 120)):
        if seconds >= size:
            return f"{seconds // (size // 2)}{unit} ago"
    return f"{seconds}s ago"


@dataclass(frozen=True)
class DeadLetter:
    """One failed job as listed: when it failed and why. Fields a job does not have are None
    (a job whose record expired has only `id` and `failed_at`)."""

    id: str
    failed_at: float
    code: str | None = None
    status: int | None = None
    message: str | None = None
    trace_id: str | None = None
    failure_reason: str | None = None
    batch: str | None = None
    row_id: str | None = None
    attempts: int | None = None
    calls: int | None = None

    @classmethod
    def of(cls, job_id: str, failed_at: float, job: dict[str, Any] | None) -> DeadLetter:
        if job is None:
            return cls(job_id, failed_at)
        error = job["last_error"] or {}
        status = error.get("status")
        return cls(
            id=job_id,
            failed_at=failed_at,
            code=_text(error.get("code")),
            status=status if isinstance(status, int) else None,
            message=_text(error.get("message")),
            trace_id=_text(error.get("trace_id")),
            failure_reason=job["failure_reason"],
            batch=job["batch"],
            row_id=job["row_id"],
            attempts=job["attempts"],
            calls=job["calls"],
        )

    def as_json(self) -> dict[str, Any]:
        """Typed, for `--json`: the failure time as ISO 8601 UTC, None as null."""
        return asdict(self) | {"failed_at": iso(self.failed_at)}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on: every filter given must match."""

    code: str | None = None
    """The error code (`bad_request`) or the HTTP status (`400`)."""
    batch: str | None = None
    since: float | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.batch is not None and letter.batch != self.batch:
            return False
        if self.code is not None and self.code not in (letter.code, str(letter.status)):
            return False
        return self.since is None or letter.failed_at >= self.since


def dead_letters(
    store: JobStore, selection: Selection, limit: int | None = None
) -> Iterator[DeadLetter]:
    """The dead letters `selection` picks, most recent first, each once, at most `limit`."""
    return islice(_selected(store, selection), limit)


def _selected(store: JobStore, selection: Selection) -> Iterator[DeadLetter]:
    seen: set[str] = set()
    entries = store.dead_letter_entries(selection.since)
    while read := list(islice(entries, DEAD_LETTER_PAGE)):
        page = [(job_id, failed_at) for job_id, failed_at in read if job_id not in seen]
        seen.update(job_id for job_id, _ in page)
        jobs = store.summaries([job_id for job_id, _ in page])
        for (job_id, failed_at), job in zip(page, jobs, strict=True):
            letter = DeadLetter.of(job_id, failed_at, job)
            if selection.matches(letter):
                yield letter
