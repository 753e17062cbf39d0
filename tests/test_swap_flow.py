"""End to end: producer → Redis → a real Celery worker → the emulator → job record and backend."""

from __future__ import annotations

import collections
import io

import pytest
import redis
import requests
from celery.result import AsyncResult
from PIL import Image

from faceswap_jobs.errors import BadRequestError, InvalidSwapRequest, PermissionDeniedError
from faceswap_jobs.models import JobState
from tests.support.emulator import Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Stack:
    stack.start_worker("flow", "--concurrency=16")
    return stack


def test_one_swap_end_to_end(worker: Stack, fresh: Emulator) -> None:
    tag = unique_tag()
    job = worker.producer.submit_swap(
        fresh.sample("astronaut.png", tag), fresh.sample("astronaut-warm.png"), metadata={"n": 1}
    )

    result = job.result(timeout=60)

    record = job.record()
    assert record.state is JobState.SUCCEEDED
    assert (record.attempts, record.calls) == (1, 1)
    assert record.metadata == {"n": 1}
    assert [a.outcome for a in record.history] == ["succeeded"]
    png = requests.get(result.image_url, timeout=10)
    image = Image.open(io.BytesIO(png.content))
    assert (image.width, image.height, len(png.content)) == (
        result.image_width,
        result.image_height,
        result.image_size,
    )
    assert AsyncResult(job.id, app=worker.producer.app).get(timeout=10) == result.model_dump()
    assert worker.producer.job(job.id).result(timeout=1) == result
    calls = fresh.calls_for(tag)
    assert [c["outcome"] for c in calls] == ["success"]
    assert calls[0]["task_id"] == result.task_id


def test_200_jobs_through_500s_and_429s_all_succeed_and_every_call_is_accounted(
    worker: Stack, fresh: Emulator
) -> None:
    fresh.configure(fault_500=0.2, fault_429=0.1)
    tags = [unique_tag() for _ in range(200)]
    jobs = [
        worker.producer.submit_swap(fresh.sample("astronaut.png", tag), fresh.sample("chelsea.png"))
        for tag in tags
    ]

    records = worker.wait_finished([job.id for job in jobs], timeout_s=240)

    assert collections.Counter(r.state for r in records) == {JobState.SUCCEEDED: 200}
    ledger = fresh.ledger()
    outcomes = collections.Counter(c["outcome"] for c in ledger)
    retried_failures = sum(len(r.history) - 1 for r in records)
    assert outcomes["success"] == 200
    assert len(ledger) == 200 + retried_failures
    assert outcomes["fault_500"] > 0 and outcomes["fault_429"] > 0
    assert outcomes["fault_500"] + outcomes["fault_429"] == retried_failures
    for tag, record in zip(tags, records, strict=True):
        assert len([c for c in ledger if f"tag={tag}" in c["request"]["source_image_url"]]) == (
            record.calls
        )
        deferrals = sum(1 for a in record.history if not a.counted)
        assert record.attempts == record.calls - deferrals
        assert all(a.error["code"] == "too_many_requests" for a in record.history if not a.counted)


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [(400, "bad_request", BadRequestError), (403, "content_moderated", PermissionDeniedError)],
)
def test_permanent_errors_are_called_once_and_fail_with_code_and_trace_id(
    worker: Stack, fresh: Emulator, status: int, code: str, error_type: type
) -> None:
    tag = unique_tag()
    fresh.configure(
        rules=[
            {"source_contains": tag, "status": status, "code": code, "message": "no", "times": None}
        ]
    )
    job = worker.producer.submit_swap(fresh.sample("astronaut.png", tag), fresh.sample())

    with pytest.raises(error_type) as caught:
        job.result(timeout=60)

    calls = fresh.calls_for(tag)
    assert len(calls) == 1
    trace_id = calls[0]["trace_id"]
    assert trace_id
    assert (caught.value.status, caught.value.code, caught.value.trace_id) == (
        status,
        code,
        trace_id,
    )
    record = worker.producer.get_job(job.id)
    assert record is not None and record.state is JobState.FAILED
    assert (record.attempts, record.calls) == (1, 1)
    assert record.last_error is not None
    assert (record.last_error["code"], record.last_error["trace_id"]) == (code, trace_id)
    assert record.failure_reason == f"permanent error: {code}"
    assert job.id in worker.producer.store.dead_letters()
    with pytest.raises(error_type):
        AsyncResult(job.id, app=worker.producer.app).get(timeout=10)

    shown = worker.cli("status", job.id)
    assert "failed" in shown and code in shown and trace_id in shown


def test_same_idempotency_key_gives_one_job_and_one_call(worker: Stack, fresh: Emulator) -> None:
    tag = unique_tag()
    source, target = fresh.sample("astronaut.png", tag), fresh.sample()

    first = worker.producer.submit_swap(source, target, idempotency_key=f"order-{tag}")
    first.result(timeout=60)
    second = worker.producer.submit_swap(source, target, idempotency_key=f"order-{tag}")

    assert second.id == first.id
    assert second.status() is JobState.SUCCEEDED
    assert len(fresh.calls_for(tag)) == 1
    with pytest.raises(InvalidSwapRequest, match="different request"):
        worker.producer.submit_swap(target, source, idempotency_key=f"order-{tag}")


def test_invalid_input_enqueues_nothing(worker: Stack, redis_client: redis.Redis) -> None:
    keys_before = set(redis_client.keys("*"))
    queue = worker.producer.settings.interactive_queue
    ok = {"source_image_url": "https://x/a.png", "target_image_url": "https://x/b.png"}
    bad_calls = [
        {**ok, "source_image_url": "ftp://x/a.png"},
        {**ok, "timeout": 0},
        {**ok, "timeout": 5},
        {**ok, "metadata": {"blob": "x" * 10_000}},
        {**ok, "queue": "urgent"},
        {**ok, "idempotency_key": "k" * 300},
    ]

    for kwargs in bad_calls:
        with pytest.raises(InvalidSwapRequest):
            worker.producer.submit_swap(**kwargs)

    assert redis_client.llen(queue) == 0
    assert set(redis_client.keys("*")) == keys_before
