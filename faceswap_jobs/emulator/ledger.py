"""The in-memory call ledger: what every `POST /face/swap` asked and what it got.

An entry is opened as soon as a call arrives, so calls that hang or are reset are counted (the
client cannot know whether they were billed; the ledger can). Tests and drills read it to check
billing-related invariants, e.g. "this job was called exactly once".
"""

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_ENTRIES = 100_000
"""Oldest entries are dropped beyond this, so a long soak cannot exhaust memory."""


@dataclass
class LedgerEntry:
    """One call; `status` stays None while in progress and for a reset (no complete answer)."""

    seq: int
    time: float
    token_hash: str | None
    request: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    outcome: str = "in_progress"
    task_id: str | None = None
    trace_id: str | None = None
    duration_s: float | None = None
    started_s: float = field(default=0.0, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The entry as served by `GET /_emulator/ledger`."""
        view = asdict(self)
        del view["started_s"]
        return view


class Ledger:
    """Entries in arrival order, numbered from 1 (numbering restarts on clear)."""

    def __init__(self) -> None:
        self._entries: deque[LedgerEntry] = deque(maxlen=MAX_ENTRIES)
        self._last_seq = 0

    def open(self, token_hash: str | None) -> LedgerEntry:
        """Record a call that just arrived."""
        self._last_seq += 1
        entry = LedgerEntry(
            seq=self._last_seq,
            time=time.time(),
            token_hash=token_hash,
            started_s=time.monotonic(),
        )
        self._entries.append(entry)
        return entry

    @staticmethod
    def mark(entry: LedgerEntry, outcome: str) -> None:
        """Name what a call is doing before it ends (a hang), leaving status and duration open."""
        entry.outcome = outcome

    @staticmethod
    def settle(
        entry: LedgerEntry,
        outcome: str,
        status: int | None,
        *,
        trace_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        """Fill in how a call ended."""
        entry.outcome = outcome
        entry.status = status
        if trace_id is not None:
            entry.trace_id = trace_id
        if task_id is not None:
            entry.task_id = task_id
        entry.duration_s = time.monotonic() - entry.started_s

    def entries(self, since_seq: int = 0, outcome: str | None = None) -> list[LedgerEntry]:
        """Entries with seq > since_seq, optionally only those with one outcome."""
        return [
            entry
            for entry in self._entries
            if entry.seq > since_seq and (outcome is None or entry.outcome == outcome)
        ]

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._last_seq = 0
