"""`faceswap-jobs dlq list|show|replay|purge` against a real worker and the emulator: filters pick
the right failures, piped output keeps whole job ids, a job replayed twice is called once more
with its history kept, and purge asks first and forgets only the queue entry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from faceswap_jobs.jobs.store import JobStore
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest
from faceswap_jobs.ops import dlq_cli
from faceswap_jobs.ops.console import console
from faceswap_jobs.ops.dead_letters import DeadLetter, Selection, age, parse_since
from faceswap_jobs.producer.batch import submit_many
from faceswap_jobs.producer.replay import FailedJobs
from tests.support.emulator import Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues

QUEUES = own_queues("dlq")
HOSTILE = "[/]\x1b[2J[link=https://evil.example]x[/link]"


@pytest.fixture(scope="module")
def dstack(stack: Stack) -> Iterator[Stack]:
    stack.use_queues(QUEUES)
    stack.start_worker("dlq", "--concurrency=4", **QUEUES)
    yield stack


def _dlq(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`faceswap-jobs dlq ARGS` as an operator runs it, output piped (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "faceswap_jobs", "dlq", *args],
        env=stack.env(**QUEUES),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ok(stack: Stack, *args: str, stdin: str = "") -> str:
    done = _dlq(stack, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def _fail_rule(tag: str, status: int, code: str, times: int | None) -> dict[str, object]:
    return {"source_contains": tag, "status": status, "code": code, "message": HOSTILE,
            "times": times}  # fmt: skip


def _failed_jobs(stack: Stack, emulator: Emulator, tags: list[str]) -> list[str]:
    jobs = [stack.producer.submit_swap(emulator.sample("astronaut.png", t), emulator.sample())
            for t in tags]  # fmt: skip
    records = stack.wait_finished([job.id for job in jobs], timeout_s=60)
    assert [r.state for r in records] == [JobState.FAILED] * len(tags)
    return [job.id for job in jobs]


def _in_dlq(stack: Stack) -> set[str]:
    keys = Keys(stack.producer.settings.key_prefix)
    return set(stack.producer.redis.zrange(keys.dead_letters, 0, -1))


# Pure parts


def test_since_reads_durations_and_iso_times() -> None:
    now = 1_700_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since("1h30m", now) == now - 5400
    assert parse_since("2024-01-01T00:00:00Z", now) == datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert parse_since("2024-01-01T02:00:00+02:00", now) == parse_since("2024-01-01", now)
    for bad in ("yesterday", "", "10", "5x", "2h and more"):
        with pytest.raises(ValueError, match="neither a duration"):
            parse_since(bad, now)


def test_a_selection_matches_code_or_status_batch_and_time() -> None:
    letter = DeadLetter("j", 100.0, code="bad_request", status=400, batch="b1")
    assert Selection().matches(letter)
    assert Selection(code="bad_request", batch="b1", since=100.0).matches(letter)
    assert Selection(code="400").matches(letter)
    assert not Selection(code="content_moderated").matches(letter)
    assert not Selection(batch="b2").matches(letter)
    assert not Selection(since=100.5).matches(letter)
    assert not Selection(code="400").matches(DeadLetter("gone", 100.0))
    assert [age(0, s) for s in (5, 150, 7300, 200000)] == ["5s ago", "2m ago", "2h ago", "2d ago"]


def _hostile_record() -> JobRecord:
    error = {"type": "BadRequestError", "message": HOSTILE, "status": 400, "code": HOSTILE,
             "trace_id": HOSTILE, "retry_after_s": None, "detail": None}  # fmt: skip
    request = SwapRequest.parse({"source_image_url": "https://a.example/1.png",
                                 "target_image_url": "https://a.example/2.png"})  # fmt: skip
    return JobRecord(
        id="job-" + "x" * 90, state=JobState.FAILED, request=request, queue="q", created_at=1.0,
        updated_at=2.0, last_error=error, failure_reason=HOSTILE, metadata={"note": HOSTILE},
        history=[Attempt(number=1, started_at=1.0, ended_at=2.0, outcome="failed", error=error)],
    )  # fmt: skip


def test_tables_show_hostile_text_as_text_and_whole_job_ids() -> None:
    record = _hostile_record()
    text = dict.fromkeys(("code", "message", "trace_id", "row_id"), HOSTILE)
    letter = DeadLetter(record.id, 1.0, status=400, batch="b", attempts=1, calls=1, **text)
    with console.capture() as captured:
        console.print(dlq_cli._table([letter], 1))
        dlq_cli._print_failure(record, 1.0)
    out = captured.get()
    assert "\x1b" not in out
    assert out.count(record.id) == 2
    assert "[/]" in out and "[link=" in out
    tsv = dlq_cli._tsv(letter)
    assert "\x1b" not in tsv and len(tsv.split("\t")) == 10 and tsv.split("\t")[1] == record.id


def test_purge_forgets_only_an_entry_still_holding_its_failure_time(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, Keys(f"t-dlq-{unique_tag()}"), job_ttl_s=60, result_ttl_s=60)
    failed_at = time.time()
    redis_client.zadd(store.keys.dead_letters, {"a": failed_at, "b": failed_at})
    assert list(store.dead_letter_entries()) == [("b", failed_at), ("a", failed_at)]

    assert store.forget_dead_letters([("a", failed_at + 1.0)]) == 0
    assert store.forget_dead_letters([("a", failed_at), ("b", failed_at), ("c", 1.0)]) == 2
    assert list(store.dead_letter_entries()) == []


# End to end


@pytest.mark.integration
def test_list_filters_by_code_and_time_and_keeps_whole_ids_when_piped(
    dstack: Stack, fresh: Emulator
) -> None:
    tag = unique_tag()
    fresh.configure(rules=[_fail_rule(f"{tag}-a", 400, "bad_request", None),
                           _fail_rule(f"{tag}-b", 403, "content_moderated", None)])  # fmt: skip
    bad = _failed_jobs(dstack, fresh, [f"{tag}-a0", f"{tag}-a1"])
    moderated = _failed_jobs(dstack, fresh, [f"{tag}-b0"])
    keys = Keys(dstack.producer.settings.key_prefix)
    dstack.producer.redis.zadd(keys.dead_letters, {bad[1]: time.time() - 7200}, xx=True)

    recent = _json_lines(_ok(dstack, "list", "--json", "--code", "bad_request", "--since", "1h"))
    older = _json_lines(_ok(dstack, "list", "--json", "--code", "400", "--since", "3h"))
    by_status = _json_lines(_ok(dstack, "list", "--json", "--code", "403"))

    assert [d["id"] for d in recent if d["id"] in bad] == [bad[0]]
    assert [d["id"] for d in older if d["id"] in bad] == [bad[0], bad[1]]
    assert moderated[0] in [d["id"] for d in by_status]
    first = next(d for d in recent if d["id"] == bad[0])
    trace_id = fresh.calls_for(f"{tag}-a0")[0]["trace_id"]
    assert first | {"failed_at": None} == {
        "id": bad[0], "failed_at": None, "code": "bad_request", "status": 400, "message": HOSTILE,
        "trace_id": trace_id, "failure_reason": "permanent error: bad_request", "batch": None,
        "row_id": None, "attempts": 1, "calls": 1,
    }  # fmt: skip
    assert isinstance(first["failed_at"], str)
    assert datetime.fromisoformat(first["failed_at"]).tzinfo is not None

    piped = _ok(dstack).splitlines()  # `dlq` alone lists
    rows = {line.split("\t")[1]: line.split("\t") for line in piped}
    assert set(bad + moderated) <= rows.keys()
    assert rows[bad[0]][2:4] == ["bad_request", "400"]
    assert all("\x1b" not in line for line in piped)
    assert _ok(dstack, "list", "--since", "2999-01-01T00:00:00") == ""


@pytest.mark.integration
def test_show_prints_the_whole_failure_and_exits_1_for_an_unknown_job(
    dstack: Stack, fresh: Emulator
) -> None:
    tag = unique_tag()
    fresh.configure(rules=[_fail_rule(tag, 400, "bad_request", None)])
    (job_id,) = _failed_jobs(dstack, fresh, [tag])
    trace_id = fresh.calls_for(tag)[0]["trace_id"]

    text = _ok(dstack, "show", job_id)
    data = json.loads(_ok(dstack, "show", job_id, "--json"))
    missing = _dlq(dstack, "show", "no-such-job")

    assert job_id in text and trace_id in text and f"tag={tag}" in text
    assert "permanent error: bad_request" in text and "\x1b" not in text
    assert (data["id"], data["state"], data["calls"]) == (job_id, "failed", 1)
    assert data["failed_at"] is not None
    assert [a["error"]["code"] for a in data["history"]] == ["bad_request"]
    assert missing.returncode == 1 and "unknown" in missing.stderr


@pytest.mark.integration
def test_a_job_replayed_twice_is_sent_once_and_keeps_its_history(
    dstack: Stack, fresh: Emulator
) -> None:
    tag = unique_tag()
    fresh.configure(rules=[_fail_rule(tag, 400, "bad_request", 1)])
    (job_id,) = _failed_jobs(dstack, fresh, [tag])

    first = _ok(dstack, "replay", job_id, job_id)
    second = _ok(dstack, "replay", job_id, "--json")
    (record,) = dstack.wait_finished([job_id], timeout_s=60)
    third = _ok(dstack, "replay", job_id, "--json")

    assert "1 job(s) sent again; 0 skipped" in first
    assert json.loads(second) == json.loads(third) == {"sent": 0, "skipped": 1}
    assert record.state is JobState.SUCCEEDED
    assert len(fresh.calls_for(tag)) == 2
    assert record.calls == 2
    assert [(a.outcome, (a.error or {}).get("code")) for a in record.history] == [
        ("failed", "bad_request"), ("succeeded", None),
    ]  # fmt: skip
    assert job_id not in _in_dlq(dstack)


@pytest.mark.integration
def test_concurrent_replays_send_one_message(dstack: Stack, fresh: Emulator) -> None:
    tag = unique_tag()
    fresh.configure(rules=[_fail_rule(tag, 400, "bad_request", 1)])
    (job_id,) = _failed_jobs(dstack, fresh, [tag])
    settings, client = dstack.producer.settings, dstack.producer.redis
    start = threading.Barrier(4)
    sent: list[int] = []

    def replay() -> None:
        replayer = FailedJobs(settings, client, dstack.producer.app)
        start.wait()
        sent.append(replayer.resend([job_id]).sent)

    threads = [threading.Thread(target=replay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (record,) = dstack.wait_finished([job_id], timeout_s=60)

    assert sorted(sent) == [0, 0, 0, 1]
    assert record.state is JobState.SUCCEEDED
    assert len(fresh.calls_for(tag)) == 2


@pytest.mark.integration
def test_replay_by_batch_sends_the_rows_back_to_their_batch(dstack: Stack, fresh: Emulator) -> None:
    tag = unique_tag()
    fresh.configure(rules=[_fail_rule(f"{tag}-1", 400, "bad_request", 1)])
    items = [{"source_image_url": fresh.sample("astronaut.png", f"{tag}-{i}"),
              "target_image_url": fresh.sample(), "id": f"row-{i}"} for i in range(3)]  # fmt: skip
    batch = submit_many(items, batch=f"dlq-{tag}", settings=dstack.producer.settings)
    assert batch.wait(timeout=60, poll_s=0.2).counts["failed"] == 1
    listed = _json_lines(_ok(dstack, "list", "--json", "--batch", batch.name))
    assert [(d["batch"], d["row_id"]) for d in listed] == [(batch.name, "row-1")]

    assert json.loads(_ok(dstack, "replay", "--batch", batch.name, "--dry-run", "--json")) == {
        "matched": 1
    }
    assert json.loads(_ok(dstack, "replay", "--batch", batch.name, "--json")) == {
        "sent": 1, "skipped": 0,
    }  # fmt: skip
    done = batch.wait(timeout=60, poll_s=0.2)

    assert (done.counts["succeeded"], done.counts["failed"]) == (3, 0)
    assert len(fresh.calls_for(f"{tag}-1")) == 2
    assert [r["status"] for r in batch.results()] == ["succeeded"] * 3


@pytest.mark.integration
def test_purge_asks_first_and_keeps_the_records(dstack: Stack, fresh: Emulator) -> None:
    tag = unique_tag()
    fresh.configure(rules=[_fail_rule(tag, 400, "bad_request", 2)])
    items = [{"source_image_url": fresh.sample("astronaut.png", f"{tag}-{i}"),
              "target_image_url": fresh.sample()} for i in range(2)]  # fmt: skip
    batch = submit_many(items, batch=f"purge-{tag}", settings=dstack.producer.settings)
    assert batch.wait(timeout=60, poll_s=0.2).counts["failed"] == 2
    ids = [str(row["job_id"]) for row in batch.results()]

    declined = _dlq(dstack, "purge", "--batch", batch.name, stdin="n\n")
    assert declined.returncode == 1 and set(ids) <= _in_dlq(dstack)
    no_answer = _dlq(dstack, "purge", "--batch", batch.name)
    assert no_answer.returncode == 1 and set(ids) <= _in_dlq(dstack)

    purged = _ok(dstack, "purge", "--batch", batch.name, stdin="y\n")
    again = _ok(dstack, "purge", "--batch", batch.name, "--yes", "--json")

    assert "2 failed job(s) taken out of the dead-letter queue" in purged
    assert json.loads(again) == {"removed": 0}
    assert not set(ids) & _in_dlq(dstack)
    assert [r["status"] for r in batch.results()] == ["failed", "failed"]
    assert batch.progress().counts["failed"] == 2
    assert json.loads(_ok(dstack, "replay", ids[0], "--json")) == {"sent": 1, "skipped": 0}
    (record,) = dstack.wait_finished([ids[0]], timeout_s=60)
    assert record.state is JobState.SUCCEEDED


MISTAKES = [["replay", "some-id", "--code", "bad_request"], ["list", "--since", "yesterday"],
            ["purge", "some-id", "--limit", "3"]]  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize("args", MISTAKES)
def test_usage_mistakes_exit_2(dstack: Stack, args: list[str]) -> None:
    done = _dlq(dstack, *args)
    assert done.returncode == 2, done.stdout
