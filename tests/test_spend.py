"""Spend: which calls are billed, the counters a real worker keeps, the report, export and
metrics that read them (equal to the emulator's ledger), and the backfill's cost estimate."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import CounterMetricFamily

from faceswap_jobs.batches.estimate import Estimate
from faceswap_jobs.batches.export import export_rows
from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.errors import (
    AmbiguousCallError,
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    FaceSwapError,
    MalformedResponseError,
    RateLimitedError,
    ServerError,
)
from faceswap_jobs.jobs.billing import Billing, RepeatCause, billing_of, repeat_cause
from faceswap_jobs.jobs.parking import ParkingLot
from faceswap_jobs.jobs.store import job_store
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import token_id
from faceswap_jobs.limits.roster import Roster
from faceswap_jobs.ops.metrics import RedisStatsCollector
from faceswap_jobs.ops.sandbox import free_port, wait_until
from tests.support.emulator import API_TOKEN, Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues

QUEUES = own_queues("spend")


def _error(exc: FaceSwapError) -> dict[str, Any]:
    return exc.to_dict()


@pytest.mark.parametrize(
    ("outcome", "error", "billing", "cause"),
    [
        ("succeeded", None, Billing.BILLED, None),
        ("retry", _error(ServerError("boom", 500, "api_error")), Billing.NONE,
         RepeatCause.SERVER_ERROR),
        ("defer", _error(RateLimitedError("slow", 429, "too_many_requests")), Billing.NONE,
         RepeatCause.RATE_LIMITED),
        ("failed", _error(BadRequestError("no", 400, "bad_request")), Billing.NONE,
         RepeatCause.SERVER_ERROR),
        ("pause", _error(AuthenticationError("who", 401, "invalid_token")), Billing.NONE,
         RepeatCause.TOKEN),
        ("retry", _error(APIConnectionError("refused", None, "connect_failed")), Billing.NONE,
         RepeatCause.SERVER_ERROR),
        ("retry", _error(AmbiguousCallError("cut", None, "connection_reset")), Billing.POSSIBLY,
         RepeatCause.AMBIGUOUS),
        ("retry", _error(AmbiguousCallError("slow", None, "soft_time_limit")), Billing.POSSIBLY,
         RepeatCause.AMBIGUOUS),
        ("retry", _error(AmbiguousCallError("late", None, "callback_lost")), Billing.POSSIBLY,
         RepeatCause.CALLBACK_LOST),
        ("interrupted", _error(AmbiguousCallError("died", None, "worker_lost")), Billing.POSSIBLY,
         RepeatCause.INTERRUPTED),
        ("retry", _error(MalformedResponseError("junk", 200)), Billing.POSSIBLY,
         RepeatCause.SERVER_ERROR),
        ("retry", _error(MalformedResponseError("junk", None)), Billing.POSSIBLY,
         RepeatCause.SERVER_ERROR),
        ("retry", _error(MalformedResponseError("huge", 502)), Billing.NONE,
         RepeatCause.SERVER_ERROR),
    ],
)  # fmt: skip
def test_a_call_is_billed_possibly_billed_or_not_by_how_it_ended(
    outcome: str, error: dict[str, Any] | None, billing: Billing, cause: RepeatCause | None
) -> None:
    assert billing_of(outcome, error) is billing
    if cause is not None:
        assert repeat_cause(outcome, error) is cause


def test_the_estimate_multiplies_rows_by_history_rate_and_price() -> None:
    estimate = Estimate(1000, 900, 1.5, "history", 10.0, "the ceiling", Decimal("0.02"))

    assert estimate.expected_calls == 1350
    assert estimate.duration_s == 135.0
    assert estimate.cost == Decimal("27.00")
    assert estimate.lines() == [
        "rows: 1,000 (900 valid, 100 rejected)",
        "expected calls: 1,350 (1.500 calls per success, history)",
        "expected duration: 2 min 15 s at 10 calls/s (the ceiling)",
        "expected cost: 27.00 (1,350 calls at 0.02 a call)",
    ]


# --- a real worker, the emulator's ledger ---------------------------------------------------


@pytest.fixture(scope="module")
def sstack(stack: Stack) -> Iterator[Stack]:
    stack.use_queues(QUEUES)
    stack.start_worker("spend", "--concurrency=4", **QUEUES)
    yield stack


def _write_rows(path: Path, sources: list[str], emulator: Emulator) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("source_image_url", "target_image_url"))
        for source in sources:
            writer.writerow((source, emulator.sample()))
    return path


def _backfill(stack: Stack, *args: str, **env: str) -> str:
    done = stack.backfill(*args, **QUEUES, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout


KINDS = ("ok-0", "ok-1", "ok-2", "flaky", "limited", "reset", "bad")


def test_spend_report_export_and_metrics_equal_the_ledger(
    sstack: Stack, fresh: Emulator, tmp_path: Path
) -> None:
    tag, batch = unique_tag(), f"spend-{unique_tag()}"
    fresh.configure(
        latency_min_s=0.05, latency_max_s=0.1,
        rules=[
            {"source_contains": f"{tag}-flaky", "status": 500, "code": "api_error",
             "message": "fetch failed", "times": 2},
            {"source_contains": f"{tag}-limited", "status": 429, "code": "too_many_requests",
             "message": "slow down", "times": 1},
            {"source_contains": f"{tag}-reset", "kind": "reset", "times": 1},
            {"source_contains": f"{tag}-bad", "status": 400, "code": "bad_request",
             "message": "rejected", "times": None},
        ],
    )  # fmt: skip
    rows = _write_rows(
        tmp_path / "rows.csv", [fresh.sample(tag=f"{tag}-{k}") for k in KINDS], fresh
    )
    _backfill(sstack, str(rows), "--batch", batch)
    prefix = sstack.producer.settings.key_prefix
    client, keys = sstack.producer.redis, Keys(prefix)
    batches = BatchStore(client, keys)
    wait_until(lambda: (p := batches.progress(batch)) is not None and p.done, 60.0, "the batch",
               None)  # fmt: skip

    ledger = fresh.calls_for(tag)
    success = sum(1 for c in ledger if c["outcome"] == "success")
    no_answer = sum(1 for c in ledger if c["status"] is None)
    refused = sum(1 for c in ledger if c["status"] is not None and c["status"] >= 400)
    assert (len(ledger), success, no_answer, refused) == (11, 6, 1, 4)

    for scope in (["--batch", batch], []):
        report = json.loads(sstack.cli("spend", "--json", *scope, **QUEUES))
        total = report["total"]
        assert total["calls"] == len(ledger)
        assert (total["billed"], total["possibly_billed"], total["not_billed"]) == (
            success,
            no_answer,
            refused,
        )
        assert total["calls_per_success"] == pytest.approx(len(ledger) / success)
        assert total["repeats_by_cause"] == {
            "rate_limited": 1, "interrupted": 0, "callback_lost": 0, "ambiguous": 1,
            "token": 0, "server_error": 2,
        }  # fmt: skip
        assert total["calls_by_outcome"] == {"succeeded": 6, "retry": 3, "defer": 1, "failed": 1}
        token = token_id(API_TOKEN)
        assert {c["token_hash"] for c in ledger} == {token}
        assert report["by_token"][token]["calls"] == len(ledger)
        assert report["by_queue"][QUEUES["FACESWAP_BULK_QUEUE"]]["billed"] == success
    table = sstack.cli("spend", "--batch", batch, **QUEUES)
    assert f"calls of batch {batch}" in table and "calls by outcome: 1 defer, 1 failed" in table

    exported = export_rows(job_store(sstack.producer.settings, client), batch)
    by_kind = {row["source_image_url"].split("?tag=", 1)[1].removeprefix(f"{tag}-"): row
               for row in exported}  # fmt: skip
    assert sum(r["billed_calls"] for r in by_kind.values()) == success
    assert (by_kind["reset"]["calls"], by_kind["reset"]["billed_calls"],
            by_kind["reset"]["possibly_billed_calls"]) == (2, 1, 1)  # fmt: skip
    assert (by_kind["bad"]["status"], by_kind["bad"]["billed_calls"]) == ("failed", 0)
    assert by_kind.keys() == set(KINDS)
    assert (by_kind["flaky"]["calls"], by_kind["flaky"]["billed_calls"]) == (3, 1)

    settings = sstack.producer.settings
    collector = RedisStatsCollector(settings, client, Roster(settings, client),
                                    ParkingLot(client, keys))  # fmt: skip
    family = next(f for f in collector.collect() if f.name == "faceswap_calls_billed")
    assert isinstance(family, CounterMetricFamily)
    samples = {(s.labels["certainty"], s.labels["queue"]): s.value for s in family.samples
               if s.name.endswith("_total") and s.labels["token"] == token}  # fmt: skip
    bulk = QUEUES["FACESWAP_BULK_QUEUE"]
    assert samples == {("billed", bulk): success, ("possibly", bulk): no_answer}

    estimate = _backfill(sstack, str(rows), "--batch", f"{batch}-next", "--dry-run",
                         "--price-per-call", "0.5")  # fmt: skip
    expected = round(len(KINDS) * len(ledger) / success)
    assert (
        f"expected calls: {expected:,} ({len(ledger) / success:.3f} calls per success" in estimate
    )
    assert f"expected cost: {Decimal('0.5') * expected:,.2f}" in estimate
    assert "the workers publish" in estimate


def test_dry_run_without_redis_estimates_from_the_settings(
    stack: Stack, emulator: Emulator, tmp_path: Path
) -> None:
    rows = _write_rows(tmp_path / "rows.csv", [emulator.sample(), "not a url"], emulator)
    out = _backfill(stack, str(rows), "--batch", "offline", "--dry-run", "--price-per-call",
                    "0.25", FACESWAP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # fmt: skip

    assert "rows: 2 (1 valid, 1 rejected)" in out
    assert "expected calls: 1 (1.000 calls per success, Redis out of reach: no history)" in out
    assert "at 800 calls/s (80% bulk share of FACESWAP_RATE_PER_S 1000/s" in out
    assert "expected cost: 0.25 (1 calls at 0.25 a call)" in out
