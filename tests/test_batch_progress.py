"""Batch progress arithmetic: what `batch show`, `batch list` and `Batch.progress()` report."""

from __future__ import annotations

from typing import Any

import pytest

from faceswap_jobs.batches.store import COUNTERS, BatchProgress


def progress(
    *,
    enqueue_done: bool = True,
    first_start_at: float | None = 1000.0,
    last_end_at: float | None = None,
    read_at: float = 1100.0,
    **counts: int,
) -> BatchProgress:
    fields: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    fields.update(counts)
    return BatchProgress(
        name="b",
        source="test",
        created_at=900.0,
        enqueue_done=enqueue_done,
        cancelled_flag=False,
        counts=fields,
        cursor_offset=0,
        cursor_line=0,
        first_start_at=first_start_at,
        last_end_at=last_end_at,
        read_at=read_at,
    )


def test_phases_add_up() -> None:
    p = progress(rows=12, rejected=2, enqueued=10, started=7, duplicates=1, succeeded=3, failed=1)
    assert (p.queued, p.running, p.finished, p.done) == (2, 3, 4, False)


def test_rate_runs_from_the_first_start_to_now_while_work_remains() -> None:
    p = progress(
        rows=1000, enqueued=1000, started=300, succeeded=180, failed=20, last_end_at=1090.0
    )
    assert p.rate_per_s == pytest.approx(200 / 100)
    assert p.eta_s == pytest.approx((700 + 100) / 2.0)


def test_a_finished_batch_keeps_the_rate_it_ran_at() -> None:
    p = progress(rows=50, enqueued=50, started=50, succeeded=50, last_end_at=1025.0, read_at=9e9)
    assert p.done
    assert p.rate_per_s == pytest.approx(2.0)
    assert p.eta_s == 0.0


def test_rows_dropped_while_queued_do_not_inflate_the_rate() -> None:
    p = progress(rows=100, enqueued=100, started=10, succeeded=10, cancelled_queued=90,
                 last_end_at=1010.0)  # fmt: skip
    assert p.done
    assert p.rate_per_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    "changes",
    [
        {"first_start_at": None},
        {"started": 5},
        {"started": 5, "succeeded": 1, "read_at": 1000.0},
    ],
    ids=["nothing started", "nothing finished", "no time elapsed"],
)
def test_no_rate_and_no_eta_before_there_is_one(changes: dict[str, Any]) -> None:
    p = progress(rows=10, enqueued=10, **changes)
    assert p.rate_per_s is None
    assert p.eta_s is None


def test_as_dict_carries_rate_and_eta() -> None:
    p = progress(rows=10, enqueued=10, started=4, succeeded=4, enqueue_done=False)
    shown = p.as_dict()
    assert shown["rate_per_s"] == pytest.approx(0.04)
    assert shown["eta_s"] == pytest.approx(6 / 0.04)
    assert shown["done"] is False
