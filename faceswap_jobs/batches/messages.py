"""Slim Celery messages for bulk jobs, written straight into kombu's Redis queue list.

A stock `send_task` message for one swap is ~1,350 bytes in Redis: the arguments are base64 (a
third larger) and repeated in `argsrepr`, and a dozen headers hold defaults. A backfill of
millions of rows queues all of that, and `send_task` costs a round trip per job. This module
builds the same protocol-2 message a worker consumes, with the body as plain JSON, only the
headers a worker reads, and a short `argsrepr` Flower shows; the enqueuer pushes thousands of
them per pipelined round trip.

The format is pinned by a test that runs a real worker on these messages; if a Celery or kombu
upgrade changes what a worker needs, that test fails first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from faceswap_jobs.celery_app import SWAP_TASK

_ENVELOPE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Origin:
    """Where a bulk job came from: its batch, its position among the batch's rows, its line."""

    batch: str
    position: int
    line: int
    row_id: str | None = None
    """The input's own `id` for the row, when it had one: exports join back on it."""

    def as_arg(self) -> dict[str, Any]:
        arg: dict[str, Any] = {"b": self.batch, "p": self.position, "l": self.line}
        if self.row_id is not None:
            arg["k"] = self.row_id
        return arg

    @classmethod
    def from_arg(cls, value: Any) -> Origin | None:
        """The origin a message carries, or None for an interactive job (or a malformed one)."""
        if not isinstance(value, dict):
            return None
        batch, position, line = value.get("b"), value.get("p"), value.get("l")
        if not isinstance(batch, str) or not isinstance(position, int):
            return None
        row_id = value.get("k")
        return cls(
            batch,
            position,
            line if isinstance(line, int) else 0,
            row_id if isinstance(row_id, str) else None,
        )


def swap_message(
    job_id: str,
    request: dict[str, Any],
    origin: Origin,
    queue: str,
    *,
    metadata: dict[str, Any] | None = None,
    delivery_tag: str,
) -> str:
    """One queued job as kombu's Redis transport stores it (what `LPUSH queue` takes).

    `delivery_tag` must be unique among unacknowledged messages: kombu keys its redelivery
    bookkeeping by it. Written as a template (the fixed parts are constant text) because a
    backfill builds tens of thousands of these a second.
    """
    args: list[Any] = [job_id, request, origin.as_arg()]
    if metadata:
        args.append(metadata)
    quoted_id = _quote(job_id)
    return (
        '{"body":' + _quote(_ENVELOPE.encode([args, {}, {}]))
        + ',"content-encoding":"utf-8","content-type":"application/json","headers":{"lang":"py",'
        + f'"task":"{SWAP_TASK}","id":{quoted_id},"root_id":{quoted_id},"retries":0,'
        + '"argsrepr":' + _quote(f"batch {origin.batch} line {origin.line}")
        + ',"kwargsrepr":"{}"},"properties":{"delivery_mode":2,"delivery_info":{"exchange":"",'
        + '"routing_key":' + _quote(queue) + '},"priority":0,"delivery_tag":'
        + _quote(delivery_tag) + "}}"
    )  # fmt: skip


def _quote(text: str) -> str:
    return _ENVELOPE.encode(text)
