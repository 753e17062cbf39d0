"""A pool of API tokens on real workers, Redis and the emulator: the ledger says which token made
each call, and the job records must say the same."""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr, ValidationError

from faceswap_jobs.config import PoolToken, Settings, parse_token_pool, token_hash
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import Limits
from faceswap_jobs.limits.pool import Member, Standing, call_order
from faceswap_jobs.models import JobRecord, JobState
from faceswap_jobs.ops.sandbox import wait_until
from tests.support.emulator import API_TOKEN, Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues
from tests.support.windows import max_calls_in_any_window

QUEUES = own_queues("token_pool")
TOKEN_A, TOKEN_B, TOKEN_C = "pool-token-a-7c1e", "pool-token-b-93d0", "pool-token-c-51fa"
ID_A, ID_B, ID_C = (token_hash(t) for t in (TOKEN_A, TOKEN_B, TOKEN_C))


# --- the pool's configuration: pure -------------------------------------------------------------


def test_a_pool_is_tokens_or_objects_with_their_own_limits() -> None:
    pool = parse_token_pool([TOKEN_A, {"token": TOKEN_B, "weight": 2, "rate_per_s": 10,
                                       "max_in_flight": 4, "rate_burst": 0}])  # fmt: skip
    assert [t.id for t in pool] == [ID_A, ID_B]
    assert (pool[0].weight, pool[0].rate_per_s, pool[0].max_in_flight) == (1.0, None, None)
    assert (pool[1].weight, pool[1].rate_per_s, pool[1].max_in_flight) == (2.0, 10.0, 4)
    assert pool[1].rate_burst == 0


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([], "empty"),
        ([TOKEN_A, TOKEN_A], "the same token twice"),
        ([{"token": TOKEN_A, "weight": 0}], "item 0.weight"),
        ([{"token": TOKEN_A, "rate_per_s": -1}], "item 0.rate_per_s"),
        ([{"token": TOKEN_A, "colour": "red"}], "item 0.colour"),
        ([{"weight": 2}], "item 0.token"),
        ([f"{TOKEN_A} trailing"], "without spaces"),
        ([f"{TOKEN_A}\u00e9"], "printable ASCII"),
        ([f"{TOKEN_A}\n"], "printable ASCII"),
        ("not a list", "must be a JSON list"),
        ([TOKEN_A] * 65, "at most 64"),
    ],
)
def test_a_bad_pool_is_refused_without_showing_a_token(raw: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_token_pool(raw)
    assert fragment in str(caught.value)
    assert TOKEN_A not in str(caught.value)


def test_settings_take_the_pool_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = [{"token": TOKEN_A, "rate_per_s": 10}, TOKEN_B]
    monkeypatch.setenv("FACESWAP_API_TOKENS", json.dumps(pool))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert [t.id for t in settings.token_pool()] == [ID_A, ID_B]
    assert settings.pool_rate_per_s(settings.token_pool()) == 10 + settings.rate_per_s
    assert TOKEN_A not in repr(settings) and TOKEN_A not in str(settings.model_dump())

    monkeypatch.setenv("FACESWAP_API_TOKENS", json.dumps([TOKEN_A, TOKEN_A]))
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert "the same token twice" in str(caught.value) and TOKEN_A not in str(caught.value)


def test_a_sync_worker_has_a_thread_for_every_call_the_pool_may_have_in_flight() -> None:
    pool = Settings(api_tokens=[{"token": TOKEN_A, "max_in_flight": 40}, TOKEN_B],  # type: ignore[list-item]
                    max_in_flight=64)  # fmt: skip
    assert (pool.pool_in_flight, pool.concurrency) == (104, 104)
    assert Settings(max_in_flight=64).concurrency == 64
    assert pool.model_copy(update={"worker_concurrency": 8}).concurrency == 8


def test_a_worker_with_an_unreadable_tokens_file_exits_with_why(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(f'["{TOKEN_A}", ')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESWAP_")}
    env["FACESWAP_API_TOKENS_FILE"] = str(path)
    done = subprocess.run([sys.executable, "-m", "faceswap_jobs", "worker"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert f"tokens file {path}: not JSON" in done.stderr.replace("\n", "")
    assert "Traceback" not in done.stderr and TOKEN_A not in done.stderr + done.stdout


def test_one_place_names_the_tokens(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="set one of api_tokens, api_token"):
        Settings(api_tokens=[TOKEN_A], api_token=SecretStr(TOKEN_B))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="set one of api_tokens, api_tokens_file"):
        Settings(api_tokens=[TOKEN_A], api_tokens_file=tmp_path / "t")  # type: ignore[arg-type]


def test_a_tokens_file_is_read_on_every_look(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    settings = Settings(api_tokens_file=path)
    with pytest.raises(ValueError, match="tokens file"):
        settings.token_pool()
    path.write_text(json.dumps([TOKEN_A]))
    assert [t.id for t in settings.token_pool()] == [ID_A]
    path.write_text(json.dumps([TOKEN_A, {"token": TOKEN_B, "weight": 3}]))
    assert [(t.id, t.weight) for t in settings.token_pool()] == [(ID_A, 1.0), (ID_B, 3.0)]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON") as caught:
        settings.token_pool()
    assert TOKEN_A not in str(caught.value)


def _standing(token: str, *, weight: float = 1.0, rate: float = 10.0, in_flight: int = 0,
              wait_s: float = 0.0, breaker: str = "closed") -> Standing:  # fmt: skip
    entry = PoolToken(token=SecretStr(token), weight=weight, rate_per_s=rate, max_in_flight=10)
    limits = Limits.from_settings(Settings(), redis.Redis(), entry)  # no I/O until a call
    return Standing(Member(entry, limits), in_flight, wait_s, breaker)


def test_the_call_order_puts_a_due_probe_first_and_open_breakers_last() -> None:
    order = call_order(
        [
            _standing(TOKEN_A, breaker="open"),
            _standing(TOKEN_B, wait_s=0.5),
            _standing(TOKEN_C, breaker="due"),
        ],
        random.Random(1),
    )
    assert [s.member.id for s in order] == [ID_C, ID_B, ID_A]


def test_the_earliest_rate_slot_goes_first_and_a_full_token_last() -> None:
    order = call_order(
        [
            _standing(TOKEN_A, wait_s=0.8),
            _standing(TOKEN_B, wait_s=0.3),
            _standing(TOKEN_C, in_flight=10),
        ],
        random.Random(1),
    )
    assert [s.member.id for s in order] == [ID_B, ID_A, ID_C]


def test_free_tokens_come_first_in_proportion_to_weight_and_free_slots() -> None:
    rng = random.Random(7)
    weighted = [_standing(TOKEN_A, weight=3), _standing(TOKEN_B, weight=1)]
    firsts = collections.Counter(call_order(weighted, rng)[0].member.id for _ in range(4000))
    assert 0.72 <= firsts[ID_A] / 4000 <= 0.78
    one_busy = [_standing(TOKEN_A, in_flight=9), _standing(TOKEN_B, in_flight=0)]
    busy = collections.Counter(call_order(one_busy, rng)[0].member.id for _ in range(4000))
    assert 0.06 <= busy[ID_A] / 4000 <= 0.12


# --- on real workers ------------------------------------------------------------------------------


@pytest.fixture
def pool(stack: Stack, emulator: Emulator) -> Iterator[Stack]:
    """The emulator accepts three pool tokens besides the suite's; everything is put back."""
    stack.use_queues(QUEUES)
    stack.reset_limits()
    emulator.reset(tokens=[API_TOKEN, TOKEN_A, TOKEN_B, TOKEN_C], latency_min_s=0.0,
                   latency_max_s=0.0)  # fmt: skip
    keys = Keys(stack.producer.settings.key_prefix)
    stack.producer.redis.delete(keys.tokens_retired(), keys.tokens_seen())
    try:
        yield stack
    finally:
        stack.stop_workers()
        emulator.reset()


def _pool_env(tokens: list[object], **env: str) -> dict[str, str]:
    return {"FACESWAP_API_TOKEN": "emulator-token", "FACESWAP_API_TOKENS": json.dumps(tokens),
            **QUEUES, **env}  # fmt: skip


def _by_token(calls: list[dict[str, object]]) -> collections.Counter[object]:
    return collections.Counter(call["token_hash"] for call in calls)


def _tokens_in_records(records: list[JobRecord]) -> collections.Counter[str | None]:
    return collections.Counter(a.token_id for r in records for a in r.history)


def _spend_by_token(stack: Stack) -> collections.defaultdict[str, dict[str, int]]:
    """`faceswap-jobs spend --json`, per token (a token with no call yet reads zero)."""
    report = json.loads(stack.cli("spend", "--json", **QUEUES))["by_token"]
    spent: collections.defaultdict[str, dict[str, int]] = collections.defaultdict(
        lambda: {"calls": 0, "billed": 0}
    )
    spent.update(report)
    return spent


def test_calls_spread_by_weight_while_every_token_has_room(pool: Stack, emulator: Emulator) -> None:
    """Two tokens far from their limits, weights 3 and 1: about three calls in four go with the
    first, and every record names the token the ledger saw."""
    pool.start_worker("pool-weights", "--concurrency=4", **_pool_env(
        [{"token": TOKEN_A, "weight": 3}, {"token": TOKEN_B, "weight": 1}]))  # fmt: skip
    tag = unique_tag()
    jobs = pool.submit_tagged(tag, 200)
    records = pool.wait_finished([job.id for job in jobs])

    calls = emulator.calls_for(tag)
    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 200}
    assert len(calls) == 200
    assert 0.62 <= _by_token(calls)[ID_A] / 200 <= 0.88
    assert _tokens_in_records(records) == _by_token(calls)
    assert ID_A in pool.cli("status", jobs[0].id, **QUEUES) or ID_B in pool.cli(
        "status", jobs[0].id, **QUEUES
    )


def test_each_token_keeps_its_own_rate_and_the_pool_adds_them_up(
    pool: Stack, emulator: Emulator
) -> None:
    """The provider allows A 4 calls/s and B 16: 120 jobs go at about 20/s, with no 429, no
    second of the ledger above a token's limit, and A's share no more than its rate allows."""
    emulator.configure(token_rates={TOKEN_A: 4, TOKEN_B: 16})
    pool.start_worker("pool-rates", "--concurrency=8", **_pool_env(
        [{"token": TOKEN_A, "rate_per_s": 4}, {"token": TOKEN_B, "rate_per_s": 16}],
        FACESWAP_RATE_FLOOR_PER_S="1"))  # fmt: skip
    tag = unique_tag()
    jobs = pool.submit_tagged(tag, 120)
    records = pool.wait_finished([job.id for job in jobs])

    calls = emulator.calls_for(tag)
    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 120}
    assert collections.Counter(c["outcome"] for c in calls) == {"success": 120}
    for tid, rate in ((ID_A, 4), (ID_B, 16)):
        times = [float(c["time"]) for c in calls if c["token_hash"] == tid]
        assert max_calls_in_any_window(times) <= rate + 1
    span_s = max(float(c["time"]) for c in calls) - min(float(c["time"]) for c in calls)
    by_token = _by_token(calls)
    assert 0 < by_token[ID_A] <= 4 * span_s + 2
    assert by_token[ID_B] > 2 * by_token[ID_A]


def test_a_revoked_token_drops_out_and_comes_back(pool: Stack, emulator: Emulator) -> None:
    """A is used up mid-run: the job whose call met it goes on with B at once, no job fails or
    waits; A's breaker probes, and once A is restored its calls succeed again."""
    pool.start_worker("pool-breaker", "--concurrency=4", **_pool_env(
        [TOKEN_A, TOKEN_B], FACESWAP_BREAKER_COOLDOWN_S="0.5",
        FACESWAP_BREAKER_MAX_COOLDOWN_S="1"))  # fmt: skip
    emulator.configure(used_up_tokens=[TOKEN_A])
    spent_before = _spend_by_token(pool)
    tag = unique_tag()
    jobs = pool.submit_tagged(tag, 60)
    records = pool.wait_finished([job.id for job in jobs])
    spent = _spend_by_token(pool)

    calls = emulator.calls_for(tag)
    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 60}
    refused = [c for c in calls if c["token_hash"] == ID_A]
    assert refused and all(c["status"] == 403 for c in refused)
    assert sum(1 for c in calls if c["token_hash"] == ID_B and c["status"] == 200) == 60
    moved = [r for r in records if len(r.history) > 1]
    assert moved, "no job met the used-up token"
    for record in moved:
        first, last = record.history[0], record.history[-1]
        assert (first.token_id, first.outcome, first.counted) == (ID_A, "retry", False)
        assert (last.token_id, last.outcome) == (ID_B, "succeeded")
    assert sum(r.attempts for r in records) == 60
    assert spent[ID_A]["calls"] - spent_before[ID_A]["calls"] == len(refused)
    assert spent[ID_A]["billed"] == spent_before[ID_A]["billed"]
    assert spent[ID_B]["billed"] - spent_before[ID_B]["billed"] == 60

    emulator.configure(used_up_tokens=[])
    tag = unique_tag()
    back = pool.submit_tagged(tag, 60)

    def a_is_back() -> bool:
        return any(c["token_hash"] == ID_A and c["status"] == 200 for c in emulator.calls_for(tag))

    wait_until(a_is_back, 30.0, "a successful call with the restored token", None)
    records = pool.wait_finished([job.id for job in back])
    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 60}


def test_with_every_token_out_jobs_wait_paused_and_fail_nothing(
    pool: Stack, emulator: Emulator
) -> None:
    pool.start_worker("pool-all-out", "--concurrency=4", **_pool_env(
        [TOKEN_A, TOKEN_B], FACESWAP_BREAKER_COOLDOWN_S="60"))  # fmt: skip
    emulator.configure(used_up_tokens=[TOKEN_A], disabled_tokens=[TOKEN_B])
    tag = unique_tag()
    jobs = pool.submit_tagged(tag, 20)
    wait_until(lambda: all(j.status() is JobState.PAUSED for j in jobs), 60.0, "all paused", None)
    calls = emulator.calls_for(tag)
    assert {c["token_hash"] for c in calls} == {ID_A, ID_B}
    assert all(c["status"] == 403 for c in calls)
    assert len(calls) <= 2 * 4

    emulator.configure(used_up_tokens=[], disabled_tokens=[])
    pool.cli("resume", "--token", ID_B, **QUEUES)
    records = pool.wait_finished([job.id for job in jobs])
    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 20}
    assert all(r.attempts == 1 for r in records)


def test_tokens_join_and_retire_without_a_restart(
    pool: Stack, emulator: Emulator, tmp_path: Path
) -> None:
    """The workers read the tokens file again when it changes, and the retired set in Redis:
    a token added to the file takes calls, a retired one takes none, a restored one again."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([TOKEN_A]))
    env = {"FACESWAP_API_TOKEN": "emulator-token", "FACESWAP_API_TOKENS_FILE": str(path),
           "FACESWAP_TOKENS_RELOAD_S": "0.2", **QUEUES}  # fmt: skip
    pool.start_worker("pool-hot", "--concurrency=4", **env)

    def run(count: int) -> collections.Counter[object]:
        tag = unique_tag()
        jobs = pool.submit_tagged(tag, count)
        records = pool.wait_finished([job.id for job in jobs])
        assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: count}
        return _by_token(emulator.calls_for(tag))

    assert run(20) == {ID_A: 20}
    path.write_text(json.dumps([TOKEN_A, TOKEN_B]))
    wait_until(lambda: ID_B in pool.cli("tokens", "list", **env), 30.0, "B published", None)
    assert set(run(60)) == {ID_A, ID_B}

    assert "retired" in pool.cli("tokens", "retire", ID_A, **env)
    listed = json.loads(pool.cli("tokens", "list", "--json", **env))["tokens"]
    assert {(t["token"], t["in_service"]) for t in listed} == {(ID_A, False), (ID_B, True)}
    wait_until(lambda: "retired" in pool.cli("limits", **env), 10.0, "retired shown", None)
    assert run(30) == {ID_B: 30}

    assert "back in service" in pool.cli("tokens", "restore", ID_A, **env)
    path.write_text(json.dumps([TOKEN_A, TOKEN_C]))
    wait_until(lambda: ID_C in pool.cli("tokens", "list", **env), 30.0, "C published", None)
    assert set(run(60)) == {ID_A, ID_C}


def test_a_dry_run_estimates_at_the_pools_combined_rate(
    pool: Stack, emulator: Emulator, tmp_path: Path
) -> None:
    """Workers hold 10/s and 30/s tokens: 400 valid rows at the 80% bulk share of 40/s take
    12.5 s; a used-up token's rate is not counted once its breaker is open."""
    pool.start_worker("pool-estimate", "--concurrency=2", **_pool_env(
        [{"token": TOKEN_A, "rate_per_s": 10}, {"token": TOKEN_B, "rate_per_s": 30}],
        FACESWAP_BREAKER_COOLDOWN_S="60"))  # fmt: skip
    rows = tmp_path / "rows.csv"
    rows.write_text("source_image_url,target_image_url\n"
                    + f"{emulator.sample()},{emulator.sample()}\n" * 400)  # fmt: skip
    env = {**QUEUES, "FACESWAP_API_TOKEN": "emulator-token"}
    wait_until(lambda: ID_B in pool.cli("tokens", "list", **env), 30.0, "B published", None)

    done = pool.backfill(str(rows), "--batch", "pool-estimate", "--dry-run", **env)
    assert done.returncode == 0, done.stderr
    assert "at 32 calls/s (80% bulk share of the 40/s ceiling the workers publish for 2 " \
           "token(s) in service)" in done.stdout  # fmt: skip
    assert "expected duration: 12 s" in done.stdout or "expected duration: 13 s" in done.stdout

    emulator.configure(used_up_tokens=[TOKEN_B])
    tag = unique_tag()
    jobs = pool.submit_tagged(tag, 10)
    pool.wait_finished([job.id for job in jobs])
    done = pool.backfill(str(rows), "--batch", "pool-estimate", "--dry-run", **env)
    assert "at 8 calls/s (80% bulk share of the 10/s ceiling the workers publish for the " \
           "token)" in done.stdout  # fmt: skip
