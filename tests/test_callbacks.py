"""Callback mode end to end: the real emulator calls back the real receiver; workers go free."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
import requests
from celery.result import AsyncResult
from hypothesis import given
from hypothesis import strategies as st

from faceswap_jobs.callbacks.signing import Ticket, callback_url, new_submission, ticket_for
from faceswap_jobs.config import token_hash
from faceswap_jobs.limits.roster import Roster
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until
from faceswap_jobs.producer.submit import Producer
from tests.support.emulator import API_TOKEN, Emulator
from tests.support.hostile import BODIES, fuzz
from tests.support.jobs import running_job, unique_tag
from tests.support.redis import redis_dump
from tests.support.stack import Stack, own_queues

if TYPE_CHECKING:
    from faceswap_jobs.worker.runtime import Runtime

pytestmark = pytest.mark.integration
SECRET = "kR3v9TqL2xWm8ZpN4bYc7HdJ6fGs1AeQ0uVi5oXt"


class Receiver:
    def __init__(self, stack: Stack, port: int) -> None:
        self.stack, self.port = stack, port
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        self.process = ManagedProcess(
            "webhook",
            python_module("faceswap_jobs", "webhook", "--port", str(self.port), "--workers", "2"),
            self.stack.logs / "webhook.log",
            self.stack.env(FACESWAP_WEBHOOK_SECRET=SECRET),
        )
        wait_until(http_ok(f"{self.base_url}/healthz"), 30.0, "receiver", self.process.log_path)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def url(self, job_id: str, submission: str | None = None) -> str:
        """A callback URL as a worker would make it (a fresh submission unless given)."""
        ticket = ticket_for(job_id, submission or new_submission(), 60.0, time.time())
        return callback_url(self.base_url, SECRET, ticket)


@pytest.fixture(scope="module")
def receiver(stack: Stack) -> Iterator[Receiver]:
    receiver = Receiver(stack, free_port())
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def worker(stack: Stack, receiver: Receiver) -> Stack:
    stack.start_worker(
        "callbacks",
        "--concurrency=4",
        FACESWAP_CALLBACK_BASE_URL=receiver.base_url,
        FACESWAP_WEBHOOK_SECRET=SECRET,
        FACESWAP_CALLBACK_WAIT_S="3",
    )
    return stack


def test_callback_mode_end_to_end(
    worker: Stack, fresh: Emulator, redis_client: redis.Redis
) -> None:
    tag = unique_tag()
    jobs = worker.submit_tagged(tag, 10)

    results = [job.result(timeout=60) for job in jobs]

    calls = fresh.calls_for(tag)
    assert collections.Counter(c["outcome"] for c in calls) == {"accepted": 10}
    by_task = {c["task_id"]: c for c in calls}
    for job, result in zip(jobs, results, strict=True):
        record = job.record()
        assert record.state is JobState.SUCCEEDED
        assert (record.attempts, record.calls) == (1, 1)
        assert [a.outcome for a in record.history] == ["succeeded"]
        assert record.api_task_id == result.task_id and result.task_id in by_task
        assert AsyncResult(job.id, app=worker.producer.app).get(timeout=10) == result.model_dump()
    inflight = redis_client.keys(f"{worker.producer.settings.key_prefix}:inflight:*")
    assert sum(redis_client.zcard(k) for k in inflight if not k.endswith(":wake")) == 0


def test_duplicate_callbacks_change_nothing(worker: Stack, fresh: Emulator) -> None:
    fresh.configure(callback_duplicate=1.0)
    tag = unique_tag()
    jobs = worker.submit_tagged(tag, 5)

    records = worker.wait_finished([job.id for job in jobs], timeout_s=60)
    wait_until(
        lambda: len(requests.get(f"{fresh.base_url}/_emulator/callbacks", timeout=5).json()[
            "deliveries"]) >= 10, 10.0, "duplicates", None,
    )  # fmt: skip

    deliveries = requests.get(f"{fresh.base_url}/_emulator/callbacks", timeout=5).json()
    assert [r.state for r in records] == [JobState.SUCCEEDED] * 5
    assert all([a.outcome for a in r.history] == ["succeeded"] for r in records)
    assert sum(d["duplicate"] for d in deliveries["deliveries"]) == 5
    assert all(d["status"] == 200 for d in deliveries["deliveries"])


def _forged_urls(receiver: Receiver, job_id: str) -> dict[str, str]:
    """URLs that must not name any submission: each is a 401 or a 403, never anything else."""
    base = f"{receiver.base_url}/callbacks/{job_id}"
    good = receiver.url(job_id).split("?", 1)[1]
    other = receiver.url("another").split("?", 1)[1]
    past = Ticket(job_id, new_submission(), int(time.time()) - 1)
    return {
        "no-signature": base,
        "forged": f"{base}?sub={new_submission()}&exp={int(time.time()) + 60}&sig={'0' * 64}",
        "other-job": f"{base}?{other}",
        "expired": callback_url(receiver.base_url, SECRET, past),
        "sig-not-ascii": f"{base}?{good.rsplit('sig=', 1)[0]}sig=%C3%A9",
        "sig-bad-escape": f"{base}?{good.rsplit('sig=', 1)[0]}sig=%ZZ%FF",
        "sub-swapped": f"{base}?{good.replace('sub=', 'sub=x')}",
        "exp-extended": f"{base}?{good.replace('exp=', 'exp=9')}",
        "id-not-printable": f"{receiver.base_url}/callbacks/%E2%80%AE{job_id}?{good}",
    }


FORGED = {"no-signature": 401} | dict.fromkeys(
    ["forged", "other-job", "expired", "sig-not-ascii", "sig-bad-escape", "sub-swapped",
     "exp-extended", "id-not-printable"], 403,
)  # fmt: skip


@pytest.mark.parametrize(("path", "status"), FORGED.items())
def test_receiver_refuses_urls_that_name_no_submission(
    receiver: Receiver, redis_client: redis.Redis, path: str, status: int
) -> None:
    job_id = str(uuid.uuid4())
    url = _forged_urls(receiver, job_id)[path]
    body = {"success": True, "task_id": "t", "image_url": "https://cdn.example.com/r.png"}
    before = _refused(receiver, redis_client)

    response = requests.post(url, json=body, timeout=5)

    assert response.status_code == status
    assert response.json()["ok"] is False
    why = "unsigned" if status == 401 else "expired" if path == "expired" else "bad_signature"
    wait_until(
        lambda: _refused(receiver, redis_client)[why] == before[why] + 1, 10.0, "counted", None
    )
    assert redis_client.keys(f"*{job_id}*") == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("not-json", b"{nope", 400),
        ("not-object", b"[1, 2]", 400),
        ("no-success", b'{"task_id": "x"}', 400),
        ("bad-utf8", b"\xff\xfe", 400),
        ("oversized", b'{"success": true, "pad": "' + b"x" * 70_000 + b'"}', 413),
    ],
)
def test_receiver_refuses_bad_bodies_with_a_4xx(
    receiver: Receiver, redis_client: redis.Redis, path: str, body: bytes, status: int
) -> None:
    job_id = str(uuid.uuid4())

    response = requests.post(receiver.url(job_id), data=body, timeout=5)

    assert response.status_code == status
    assert response.json()["ok"] is False
    assert redis_client.keys(f"*{job_id}*") == []


def test_callback_for_an_unknown_job_is_answered_without_side_effects(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    job_id = str(uuid.uuid4())
    before = _refused(receiver, redis_client)
    response = requests.post(
        receiver.url(job_id), json={"success": True, "image_url": "http://x/y.png"}, timeout=5
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "outcome": "ignored"}
    assert redis_client.keys(f"*{job_id}*") == []
    assert _refused(receiver, redis_client)["unknown_job"] == before["unknown_job"] + 1


def test_callback_before_the_submission_is_recorded_is_not_lost(
    worker: Stack, receiver: Receiver
) -> None:
    from faceswap_jobs.worker.runtime import Runtime

    rt = Runtime.build(worker.producer.settings, worker.producer.app)
    submission = new_submission()
    record, attempt = running_job(rt.store, submission)

    early = requests.post(
        receiver.url(record.id, submission),
        json={"success": True, "task_id": "vendor-1", "image_url": "http://x/r.png",
              "image_width": 8, "image_height": 8, "image_size": 64},
        timeout=5,
    )  # fmt: skip
    recorded = rt.jobs.accept(record.id, attempt, "vendor-1", 30.0, "lease", "token")

    assert early.json() == {"ok": True, "outcome": "succeeded"}
    assert recorded is False
    stored = rt.store.get(record.id)
    assert stored is not None and stored.state is JobState.SUCCEEDED
    assert stored.result is not None and stored.result.image_url == "http://x/r.png"
    assert (stored.attempts, [a.outcome for a in stored.history]) == (1, ["succeeded"])


def test_lost_callback_is_recovered_by_the_reconciler(worker: Stack, fresh: Emulator) -> None:
    fresh.configure(callback_loss=1.0)
    tag = unique_tag()
    job = worker.submit_tagged(tag, 1)[0]
    wait_until(lambda: job.record().history[0].outcome == "retry", 30.0, "the reconciler", None)
    fresh.configure(callback_loss=0.0)

    result = job.result(timeout=60)

    record = job.record()
    lost = record.history[:-1]
    assert record.state is JobState.SUCCEEDED
    assert lost and all(a.outcome == "retry" for a in lost)
    assert {a.error["code"] for a in lost if a.error} == {"callback_lost"}
    assert record.history[-1].outcome == "succeeded"
    assert record.attempts == record.calls == len(record.history)
    calls = fresh.calls_for(tag)
    assert [c["outcome"] for c in calls] == ["accepted"] * record.calls
    assert result.task_id == calls[-1]["task_id"]


def test_receiver_restarted_mid_flight_loses_no_job(
    worker: Stack, fresh: Emulator, receiver: Receiver
) -> None:
    fresh.configure(callback_delay_s=1500.0)
    tag = unique_tag()
    jobs = worker.submit_tagged(tag, 6)
    wait_until(
        lambda: all(j.status() is JobState.WAITING_CALLBACK for j in jobs), 30.0, "acceptance", None
    )

    receiver.stop()
    time.sleep(2.0)
    fresh.configure(callback_delay_s=0.0)
    receiver.start()
    records = worker.wait_finished([job.id for job in jobs], timeout_s=90)

    assert [r.state for r in records] == [JobState.SUCCEEDED] * 6
    assert all(
        r.history[0].error and r.history[0].error["code"] == "callback_lost" for r in records
    )


def test_flower_hears_that_a_callback_settled_the_job(worker: Stack, fresh: Emulator) -> None:
    """The worker says the job waits for its callback; the receiver says it succeeded."""
    app = worker.producer.app
    heard: list[dict] = []
    target: list[str] = []
    ready = threading.Event()

    def ours(kind: str) -> list[dict]:
        return [e for e in heard if target and e["uuid"] == target[0] and e["type"] == kind]

    def listen() -> None:
        handlers = {"task-succeeded": heard.append, "task-retried": heard.append}
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers=handlers)
            ready.set()
            with contextlib.suppress(TimeoutError, OSError):
                for _ in receiver.itercapture(limit=None, timeout=30, wakeup=False):
                    if ours("task-succeeded") and ours("task-retried"):
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(10)
    time.sleep(0.5)
    job = worker.submit_tagged(unique_tag(), 1)[0]
    target.append(job.id)
    job.result(timeout=60)
    listener.join(30)

    [waiting] = ours("task-retried")
    assert waiting["exception"].startswith("waiting: callback for ")
    assert not waiting["hostname"].startswith("settlement@")
    [event] = ours("task-succeeded")
    assert event["hostname"].startswith("settlement@")


def _refused(receiver: Receiver, client: redis.Redis) -> collections.Counter[str]:
    """The receiver's and the settle script's counts of callbacks that changed nothing."""
    stats = client.hgetall(f"{receiver.stack.producer.settings.key_prefix}:stats")
    return collections.Counter(
        {k.removeprefix("callbacks:refused:"): int(v) for k, v in stats.items()
         if k.startswith("callbacks:refused:")}
    )  # fmt: skip


def _waiting(worker: Stack, fresh: Emulator) -> tuple[Any, str, str]:
    """A job whose call was accepted and waits for its (slow) callback: the job, the callback URL
    the API was given (as anyone reading its ledger sees it) and the API's task id."""
    fresh.configure(callback_delay_s=1500.0)
    tag = unique_tag()
    job = worker.submit_tagged(tag, 1)[0]
    wait_until(lambda: job.status() is JobState.WAITING_CALLBACK, 30.0, "acceptance", None)
    [call] = fresh.calls_for(tag)
    return job, call["request"]["callback_url"], call["task_id"]


def _failure(task_id: str, code: str) -> dict[str, Any]:
    return {"success": False, "task_id": task_id, "error": {"code": code, "message": "boom"}}


def test_a_leaked_url_cannot_bill_resubmissions(
    worker: Stack, fresh: Emulator, receiver: Receiver, redis_client: redis.Redis
) -> None:
    """One failure body posted again and again: the first retries its own job (one more call),
    every replay changes nothing, before and after the resubmission is accepted."""
    job, url, task_id = _waiting(worker, fresh)
    before = _refused(receiver, redis_client)

    first = requests.post(url, json=_failure(task_id, "api_error"), timeout=5)
    replays = [requests.post(url, json=_failure(task_id, "api_error"), timeout=5)]
    wait_until(
        lambda: job.record().calls == 2 and job.status() is JobState.WAITING_CALLBACK,
        60.0, "the resubmission", None,
    )  # fmt: skip
    replays += [requests.post(url, json=_failure(task_id, "api_error"), timeout=5)
                for _ in range(5)]  # fmt: skip

    assert first.json() == {"ok": True, "outcome": "retry"}
    assert [r.json() for r in replays] == [{"ok": True, "outcome": "ignored"}] * 6
    record = job.record()
    assert (record.calls, record.state) == (2, JobState.WAITING_CALLBACK)
    assert [a.outcome for a in record.history] == ["retry", "accepted"]
    assert record.history[0].submission != record.history[1].submission
    assert len(fresh.ledger()) == 2
    refused = _refused(receiver, redis_client) - before
    assert refused["not_waiting"] + refused["stale_submission"] == 6
    assert refused["stale_submission"] >= 5


def test_a_callback_must_carry_the_recorded_task_id(
    worker: Stack, fresh: Emulator, receiver: Receiver, redis_client: redis.Redis
) -> None:
    job, url, task_id = _waiting(worker, fresh)
    before = _refused(receiver, redis_client)
    forged = {"success": True, "image_url": "https://cdn.example.com/forged.png"}

    answers = [
        requests.post(url, json=forged | {"task_id": "someone-elses"}, timeout=5),
        requests.post(url, json=forged, timeout=5),
        requests.post(url, json=_failure("someone-elses", "invalid_token"), timeout=5),
    ]

    assert [a.json()["outcome"] for a in answers] == ["ignored"] * 3
    assert job.status() is JobState.WAITING_CALLBACK
    assert (_refused(receiver, redis_client) - before)["task_mismatch"] == 3
    genuine = forged | {"task_id": task_id}
    assert requests.post(url, json=genuine, timeout=5).json()["outcome"] == "succeeded"
    record = job.record()
    assert record.result is not None and record.result.image_url == genuine["image_url"]
    assert record.api_task_id == task_id


def test_a_callback_never_opens_the_breaker(
    worker: Stack, fresh: Emulator, receiver: Receiver
) -> None:
    """`invalid_token` in a callback ends its own job's call; the token stays usable for all."""
    from faceswap_jobs.worker.runtime import Runtime

    job, url, task_id = _waiting(worker, fresh)
    rt = Runtime.build(worker.producer.settings, worker.producer.app)

    answer = requests.post(url, json=_failure(task_id, "invalid_token"), timeout=5)

    assert answer.json()["outcome"] != "ignored"
    first = job.record().history[0]
    assert first.error is not None and first.error["code"] == "invalid_token"
    assert _breakers(rt) == {"closed"}
    fresh.configure(callback_delay_s=0.0)
    other = worker.submit_tagged(unique_tag(), 1)[0]
    other.result(timeout=60)
    assert other.record().calls == 1
    assert _breakers(rt) == {"closed"}


def _breakers(rt: Runtime) -> set[str]:
    """The breaker of every token the workers hold (they publish their ids)."""
    return {snap.breaker.state for snap in Roster(rt.settings, rt.redis).snapshots()}


@fuzz(150)
@given(body=st.binary(max_size=300) | st.builds(lambda d: json.dumps(d).encode(), BODIES))
def test_no_callback_body_is_a_500(receiver: Receiver, body: bytes) -> None:
    """A signed URL (an unknown job) and any body at all: a 2xx or a 4xx with a reason."""
    response = requests.post(receiver.url(str(uuid.uuid4())), data=body, timeout=5)

    assert response.status_code in (200, 400, 413)
    assert response.json()["ok"] is (response.status_code == 200)


def test_the_webhook_secret_appears_nowhere(
    worker: Stack, fresh: Emulator, receiver: Receiver, redis_client: redis.Redis
) -> None:
    """Only HMACs of it travel: not the secret itself in a log, Redis, or what the API saw."""
    job = worker.submit_tagged(unique_tag(), 1)[0]
    job.result(timeout=60)
    requests.post(receiver.url(job.id), data=b"{nope", timeout=5)

    places = {
        "worker log": "\n".join(w.log_text() for w in worker.workers),
        "receiver log": receiver.process.log_text() if receiver.process else "",
        "redis": redis_dump(redis_client),
        "emulator ledger": json.dumps(fresh.ledger()),
    }
    assert "callback_url" in places["emulator ledger"]
    for place, text in places.items():
        assert SECRET not in text, f"the webhook secret leaked into the {place}"


def test_a_pool_in_callback_mode_frees_the_slot_of_the_token_that_called(
    stack: Stack, receiver: Receiver, fresh: Emulator, redis_client: redis.Redis
) -> None:
    """Two tokens, callback mode: each call's token is recorded when the API accepts it, and
    the callback frees that token's in-flight slot, not another's."""
    pool = ["cb-pool-token-a-4e2f", "cb-pool-token-b-8a61"]
    fresh.configure(tokens=[API_TOKEN, *pool], latency_min_s=0.0, latency_max_s=0.0)
    queues = own_queues("callbacks-pool")
    update = {"interactive_queue": queues["FACESWAP_INTERACTIVE_QUEUE"],
              "bulk_queue": queues["FACESWAP_BULK_QUEUE"]}  # fmt: skip
    producer = Producer(stack.producer.settings.model_copy(update=update))
    env = {
        "FACESWAP_CALLBACK_BASE_URL": receiver.base_url,
        "FACESWAP_WEBHOOK_SECRET": SECRET,
        "FACESWAP_API_TOKEN": "emulator-token",
        "FACESWAP_API_TOKENS": json.dumps(pool),
    }
    process = stack.start_worker("callbacks-pool", "--concurrency=4", **env, **queues)
    try:
        tag = unique_tag()
        jobs = [producer.submit_swap(fresh.sample("astronaut.png", f"{tag}-{i}"), fresh.sample())
                for i in range(20)]  # fmt: skip
        for job in jobs:
            job.result(timeout=60)
    finally:
        stack.workers.remove(process)
        process.stop(grace_s=15.0)

    calls = fresh.calls_for(tag)
    assert collections.Counter(c["outcome"] for c in calls) == {"accepted": 20}
    by_task = {c["task_id"]: c["token_hash"] for c in calls}
    records = [job.record() for job in jobs]
    assert all(r.state is JobState.SUCCEEDED and r.calls == 1 for r in records)
    assert {r.api_task_id: r.history[0].token_id for r in records} == by_task
    assert set(by_task.values()) == {token_hash(t) for t in pool}
    prefix = stack.producer.settings.key_prefix
    for token in pool:
        assert redis_client.zcard(f"{prefix}:inflight:{token_hash(token)}") == 0
