"""Callback mode end to end: the real emulator calls back the real receiver; workers go free."""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests
from celery.result import AsyncResult

from faceswap_jobs.callbacks.signing import callback_url, sign
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until
from tests.support.emulator import Emulator
from tests.support.jobs import running_job, unique_tag
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
SECRET = "webhook-secret-5a1f9c3e7d"


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

    def url(self, job_id: str) -> str:
        return callback_url(self.base_url, SECRET, job_id)


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


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("no-signature", b'{"success": true}', 401),
        ("forged", b'{"success": true}', 403),
        ("other-job", b'{"success": true}', 403),
        ("not-json", b"{nope", 400),
        ("not-object", b"[1, 2]", 400),
        ("no-success", b'{"task_id": "x"}', 400),
        ("bad-utf8", b"\xff\xfe", 400),
        ("oversized", b'{"success": true, "pad": "' + b"x" * 70_000 + b'"}', 413),
    ],
)
def test_receiver_refuses_bad_callbacks_with_a_4xx(
    receiver: Receiver, redis_client: redis.Redis, path: str, body: bytes, status: int
) -> None:
    job_id = str(uuid.uuid4())
    url = {
        "no-signature": f"{receiver.base_url}/callbacks/{job_id}",
        "forged": f"{receiver.base_url}/callbacks/{job_id}?sig={'0' * 64}",
        "other-job": f"{receiver.base_url}/callbacks/{job_id}?sig={sign(SECRET, 'another')}",
    }.get(path, receiver.url(job_id))
    keys_before = set(redis_client.keys("*"))

    response = requests.post(url, data=body, timeout=5)

    assert response.status_code == status
    assert response.json()["ok"] is False
    assert set(redis_client.keys("*")) == keys_before


def test_callback_for_an_unknown_job_is_answered_without_side_effects(
    receiver: Receiver, redis_client: redis.Redis
) -> None:
    keys_before = set(redis_client.keys("*"))
    response = requests.post(
        receiver.url(str(uuid.uuid4())), json={"success": True, "image_url": "http://x/y.png"}
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "outcome": "ignored"}
    assert set(redis_client.keys("*")) == keys_before


def test_callback_before_the_submission_is_recorded_is_not_lost(
    worker: Stack, receiver: Receiver
) -> None:
    from faceswap_jobs.worker.runtime import Runtime

    rt = Runtime.build(worker.producer.settings, worker.producer.app)
    record, attempt = running_job(rt.store)

    early = requests.post(
        receiver.url(record.id),
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
