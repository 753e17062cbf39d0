"""No poison message: what a worker cannot process ends `failed` with `internal_error` (dead-letter
queue, batch counters) or is acknowledged and dropped; nothing loops, nothing stays `queued`, and
the worker goes on with the next job. Messages are pushed raw, as a stale or foreign producer
could, past every validator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest

from faceswap_jobs.batches.messages import Origin, swap_message
from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import wait_until
from faceswap_jobs.worker.task import _internal_message
from tests.support.emulator import Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues

pytestmark = pytest.mark.integration

QUEUES = own_queues("poison")


@pytest.fixture(scope="module")
def pstack(stack: Stack) -> Iterator[Stack]:
    stack.use_queues(QUEUES)
    stack.start_worker("poison", "--concurrency=2", **QUEUES)
    yield stack


def _push_bulk(stack: Stack, batch: str, request: dict[str, Any], metadata: Any = None) -> str:
    """One bulk row's message, straight onto the queue (no validation), counted as enqueued."""
    settings = stack.producer.settings
    job_id = str(uuid.uuid4())
    store = BatchStore(stack.producer.redis, Keys(settings.key_prefix))
    store.create(batch, "test", "")
    message = swap_message(job_id, request, Origin(batch, 0, 1), settings.bulk_queue,
                           metadata=metadata, delivery_tag=f"{job_id}.0")  # fmt: skip
    pipe = stack.producer.redis.pipeline()
    # A lone surrogate travels as the JSON escape a JSON encoder writes for it (in the body,
    # itself a JSON string): valid UTF-8 on the wire, a surrogate once decoded.
    pipe.lpush(settings.bulk_queue, message.replace("\ud800", "\\\\ud800"))
    pipe.hincrby(Keys(settings.key_prefix).batch(batch), "enqueued", 1)
    pipe.hset(Keys(settings.key_prefix).batch(batch), "enqueue_done", "1")
    pipe.execute()
    return job_id


def _queues_empty(stack: Stack) -> bool:
    client = stack.producer.redis
    return all(client.llen(q) == 0 for q in QUEUES.values())


def _settled(stack: Stack, batch: str) -> bool:
    store = BatchStore(stack.producer.redis, Keys(stack.producer.settings.key_prefix))
    progress = store.progress(batch)
    return progress is not None and progress.done


def test_an_invalid_request_in_a_bulk_message_ends_the_row_instead_of_leaving_it_queued(
    pstack: Stack, fresh: Emulator
) -> None:
    deep: dict[str, Any] = {}
    for _ in range(300):
        deep = {"a": deep}
    batch = f"poison-{unique_tag()}"
    src, tgt = fresh.sample("astronaut.png"), fresh.sample()
    bad_url = _push_bulk(pstack, batch, {"source_image_url": src + "\ud800",
                                         "target_image_url": tgt})  # fmt: skip
    bad_meta = _push_bulk(pstack, batch, {"source_image_url": src, "target_image_url": tgt},
                          metadata=deep)  # fmt: skip

    wait_until(lambda: _settled(pstack, batch), 60.0, "the poisoned batch", None)

    progress = BatchStore(pstack.producer.redis, Keys(pstack.producer.settings.key_prefix))
    counts = cast(Any, progress.progress(batch)).counts
    assert (counts["enqueued"], counts["started"], counts["failed"]) == (2, 2, 2)
    assert pstack.producer.get_job(bad_url) is None and pstack.producer.get_job(bad_meta) is None
    assert _queues_empty(pstack)
    assert fresh.ledger() == []


def test_a_corrupt_record_ends_failed_with_internal_error_in_the_dead_letter_queue(
    pstack: Stack, fresh: Emulator
) -> None:
    job = pstack.producer.submit_swap(fresh.sample("astronaut.png"), fresh.sample(),
                                      metadata={"n": 1})  # fmt: skip
    keys = Keys(pstack.producer.settings.key_prefix)
    # A record the worker cannot read (written by a broken tool, say): the task meets a
    # pydantic ValidationError, which it does not expect.
    pstack.producer.redis.hset(keys.job(job.id), "created_at", "yesterday")
    wait_until(
        lambda: pstack.producer.redis.hget(keys.job(job.id), "state") == JobState.FAILED,
        60.0, "the corrupt job", None,
    )  # fmt: skip

    raw = pstack.producer.redis.hgetall(keys.job(job.id))
    error = json.loads(raw["last_error"])
    assert error["code"] == "internal_error" and error["type"] == "FaceSwapError"
    assert error["message"].startswith("unexpected ValidationError in the worker")
    assert len(error["message"]) < 300
    assert raw["failure_reason"] == "internal_error"
    assert job.id in pstack.producer.store.dead_letters()
    assert _queues_empty(pstack)
    assert fresh.ledger() == []


def test_undecodable_messages_are_dropped_and_the_worker_goes_on(
    pstack: Stack, fresh: Emulator
) -> None:
    settings = pstack.producer.settings
    client = pstack.producer.redis
    not_json = b'{"body": "not json at all", "content-type": "application/json", ' + (
        b'"content-encoding": "utf-8", "headers": {}, "properties": {"delivery_tag": "x1", '
        b'"delivery_info": {"exchange": "", "routing_key": "t-poison.bulk"}, "priority": 0}}'
    )  # fmt: skip
    not_an_id = swap_message("x", {}, Origin("b", 0, 1), settings.bulk_queue,
                             delivery_tag="x2").replace('["x",', "[12345,", 1)  # fmt: skip
    client.lpush(settings.bulk_queue, not_json, not_an_id)
    job = pstack.producer.submit_swap(fresh.sample("astronaut.png"), fresh.sample())

    assert job.result(timeout=60).image_url
    wait_until(lambda: _queues_empty(pstack), 60.0, "the queues to drain", None)
    assert len(fresh.ledger()) == 1


def test_the_stored_internal_error_holds_no_secret() -> None:
    secret = "s3cr3t-token-value-0123456789"
    exc = RuntimeError(
        f"boom: redis://:hunter2@10.0.0.5:6379/0 Authorization: Bearer {secret} "
        + "password=pw123 \x1b[2J"
        + "x" * 5000
    )

    text = _internal_message(["another-pool-token", secret], exc)

    assert text.startswith("unexpected RuntimeError in the worker: boom")
    for leaked in (secret, "hunter2", "pw123", "\x1b"):
        assert leaked not in text
    assert len(text) < 300


UNREADABLE = [
    b"\xff\xfe garbage",
    b"[1, 2]",
    b"{}",
    b'"a string"',
    b"null",
    b"[" * 100_000,
    b'{"properties": {}}',
    b'{"properties": {"delivery_tag": 7}, "body": "e30="}',
    b'{"properties": {"delivery_tag": "t", "body_encoding": "base64"}, "body": "!!!"}',
    b'{"properties": {"delivery_tag": "t", "body_encoding": "rot13"}, "body": "x"}',
    b'{"properties": {"delivery_tag": "t", "delivery_info": []}, "body": "x"}',
    b'{"properties": {"delivery_tag": "t"}, "headers": "x", "body": "x"}',
]


def test_queue_items_that_are_no_message_do_not_stop_the_worker(
    pstack: Stack, fresh: Emulator
) -> None:
    """Anyone who can LPUSH can put anything on a queue: the worker drops what is no message and
    serves the next job (kombu alone exited on the first such item, and again after a restart)."""
    settings = pstack.producer.settings
    client = pstack.producer.redis
    client.lpush(settings.interactive_queue, *UNREADABLE)
    client.lpush(settings.bulk_queue, *UNREADABLE)

    job = pstack.producer.submit_swap(fresh.sample("astronaut.png"), fresh.sample())

    assert job.result(timeout=60).image_url
    wait_until(lambda: _queues_empty(pstack), 60.0, "the queues to drain", None)
    assert all(worker.alive() for worker in pstack.workers)
    assert len(fresh.ledger()) == 1
