"""Budgets: scopes as an operator writes them, the charge script racing on a real Redis, and
16 worker threads in 2 processes racing to a cap of 100 calls against the emulator's ledger."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.budget import (
    UTC_DAY_LUA,
    Budget,
    Charge,
    Refusal,
    calls_for_money,
    day_scope,
    job_scopes,
    parse_scope,
)
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import wait_until
from tests.support.emulator import Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues

QUEUES = own_queues("budgets")
QUEUE_SCOPE = f"queue:{QUEUES['FACESWAP_INTERACTIVE_QUEUE']}"


@pytest.mark.parametrize(
    "text", ["day", "day:2026-12-07", "queue:faceswap.bulk", "batch:spring_2026-v2", " day "]
)
def test_an_operator_names_a_day_a_queue_or_a_batch(text: str) -> None:
    assert parse_scope(text) == text.strip()


@pytest.mark.parametrize(
    "text", ["", "days", "day:2026-13-01", "day:tomorrow", "queue:", "batch:a b", "token:x",
             "batch:" + "x" * 201, "queue:a\x1b[31m"],
)  # fmt: skip
def test_anything_else_is_refused_with_what_a_scope_looks_like(text: str) -> None:
    with pytest.raises(ValueError, match=r"scope is|calendar day"):
        parse_scope(text)


def test_a_job_is_charged_to_its_queue_and_its_batch_besides_the_day() -> None:
    assert job_scopes("faceswap.bulk", "spring") == ("queue:faceswap.bulk", "batch:spring")
    assert job_scopes("faceswap.interactive", None) == ("queue:faceswap.interactive",)


def test_money_becomes_the_whole_calls_it_pays_for() -> None:
    assert calls_for_money(Decimal("50"), Decimal("0.03")) == 1666
    assert calls_for_money(Decimal("0.02"), Decimal("0.03")) == 0
    with pytest.raises(ValueError):
        calls_for_money(Decimal("-1"), Decimal("0.03"))
    with pytest.raises(ValueError):
        calls_for_money(Decimal("1"), Decimal("0"))


def test_the_scripts_day_is_the_utc_calendar_day(redis_client: redis.Redis) -> None:
    script = UTC_DAY_LUA + "return utc_day(tonumber(ARGV[1]))"
    moments = [0, 86399, 86400, 951782400, 951868799, 4107542399, 1767225599, 1767225600]
    moments += list(range(1_700_000_000, 1_900_000_000, 7_654_321))
    for seconds in moments:
        expected = day_scope(datetime.fromtimestamp(seconds, UTC)).removeprefix("day:")
        assert redis_client.eval(script, 0, seconds) == expected, seconds


@pytest.fixture
def budget(redis_client: redis.Redis) -> Iterator[Budget]:
    keys = Keys(f"t-budget-{uuid.uuid4().hex[:8]}")
    yield Budget(redis_client, keys, warn_share=0.8)
    for key in redis_client.scan_iter(f"{keys.prefix}:*"):
        redis_client.delete(key)


def test_threads_racing_to_a_cap_get_exactly_the_cap(budget: Budget) -> None:
    budget.set_cap("batch:b", 100)
    grants: list[Charge] = []
    refusals: list[Refusal] = []
    lock = threading.Lock()

    def spend() -> None:
        while True:
            charge = budget.charge(("queue:q", "batch:b"))
            with lock:
                if isinstance(charge, Refusal):
                    refusals.append(charge)
                    return
                grants.append(charge)

    threads = [threading.Thread(target=spend) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(grants) == 100
    assert {r.usage.scope for r in refusals} == {"batch:b"} and len(refusals) == 16
    usage = {u.scope: u for u in budget.usage(["queue:q"])}
    assert usage["batch:b"].spent == 100 and usage["batch:b"].exhausted
    assert usage["queue:q"].spent == 100 and usage["queue:q"].cap is None
    assert usage[budget.today()].spent == 100
    crossed = [u for g in grants for u in g.crossed]
    assert [(u.scope, u.spent, u.cap) for u in crossed] == [("batch:b", 80, 100)]


def test_a_refused_charge_counts_nothing_and_a_refund_gives_a_call_back(budget: Budget) -> None:
    budget.set_cap("queue:q", 5)
    budget.set_cap("batch:b", 1)
    first = budget.charge(("queue:q", "batch:b"))
    assert isinstance(first, Charge) and first.scopes[1:] == ("queue:q", "batch:b")
    refused = budget.charge(("queue:q", "batch:b"))
    assert isinstance(refused, Refusal) and refused.usage.scope == "batch:b"
    spent = {u.scope: u.spent for u in budget.usage(["queue:q"])}
    assert spent["queue:q"] == 1 and spent[first.scopes[0]] == 1
    budget.refund(first.scopes)
    assert isinstance(budget.charge(("queue:q", "batch:b")), Charge)


def test_a_scopes_spend_expires_a_job_lifetime_after_its_last_call(
    budget: Budget, redis_client: redis.Redis
) -> None:
    charge = budget.charge(("batch:b",))
    assert isinstance(charge, Charge)
    for scope in charge.scopes:
        assert 0 < redis_client.pttl(budget._keys.budget_spent(scope)) <= 30 * 86400 * 1000


def test_a_day_cap_applies_to_every_day_and_one_days_own_cap_wins(budget: Budget) -> None:
    today = budget.today()
    budget.set_cap("day", 2)
    assert budget.cap(today) == 2
    assert all(isinstance(budget.charge(()), Charge) for _ in range(2))
    assert isinstance(budget.charge(()), Refusal)
    assert budget.raise_cap(today, 1) == 3
    assert budget.cap("day") == 2 and budget.cap(today) == 3
    assert isinstance(budget.charge(()), Charge)
    with pytest.raises(ValueError, match="unlimited"):
        budget.raise_cap("batch:none", 5)


def test_waiting_jobs_are_released_no_more_than_the_room(
    budget: Budget, redis_client: redis.Redis
) -> None:
    keys = budget._keys
    budget.set_cap("batch:b", 0)
    for i in range(5):
        redis_client.zadd(keys.budget_waiting("batch:b"), {f"job-{i}": i})
    budget.waiting("batch:b")
    assert budget.release(100) == {}
    budget.set_cap("batch:b", 2)
    assert budget.release(100) == {"batch:b": 2}
    assert redis_client.zrange(keys.parked, 0, -1) == ["job-0", "job-1"]
    budget.set_cap("batch:b", None)
    assert budget.release(100) == {"batch:b": 3}
    assert redis_client.smembers(keys.budget_waiting_scopes) == set()


@pytest.fixture(scope="module")
def bstack(stack: Stack) -> Iterator[Stack]:
    stack.use_queues(QUEUES)
    stack.start_worker("budget-a", "--concurrency=8", **QUEUES)
    stack.start_worker("budget-b", "--concurrency=8", **QUEUES)
    yield stack


@pytest.mark.integration
def test_sixteen_threads_in_two_workers_spend_exactly_the_budget_then_a_raise_releases_the_rest(
    bstack: Stack, fresh: Emulator
) -> None:
    bstack.cli("budget", "set", QUEUE_SCOPE, "--calls", "100")
    tag = unique_tag()
    jobs = bstack.submit_tagged(tag, 130)
    ids = [job.id for job in jobs]
    records = []

    def all_settled() -> bool:
        nonlocal records
        records = [bstack.producer.get_job(j) for j in ids]
        states = [r.state for r in records if r is not None]
        return states.count(JobState.SUCCEEDED) == 100 and states.count(JobState.PAUSED) == 30

    wait_until(all_settled, 60.0, "100 jobs succeeded and 30 paused", None)
    assert len(fresh.calls_for(tag)) == 100
    paused = [r for r in records if r is not None and r.state is JobState.PAUSED]
    assert {r.wait_reason for r in paused} == {f"budget: {QUEUE_SCOPE}"}
    assert all(r.calls == 0 for r in paused)
    shown = bstack.cli("budget", "show", "--json")
    assert f'"scope": "{QUEUE_SCOPE}", "spent_calls": 100, "cap_calls": 100' in shown
    warnings = [
        line
        for name in ("budget-a", "budget-b")
        for line in Path(bstack.logs / f"{name}.log").read_text().splitlines()
        if f"budget {QUEUE_SCOPE}: 80 of 100 calls spent" in line
    ]
    assert len(warnings) == 1

    bstack.cli("budget", "raise", QUEUE_SCOPE, "--by", "30")
    finished = bstack.wait_finished(ids, timeout_s=60.0)
    assert all(r.state is JobState.SUCCEEDED for r in finished)
    assert len(fresh.calls_for(tag)) == 130
    assert all(r.calls == 1 for r in finished)
