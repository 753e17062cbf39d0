"""A backfill over a hand corpus of hostile rows (issue 14) on a real Redis: every bad row is a
reject with its reason, every good row is enqueued as a message a worker can decode, a repeated
`id` asking for something else is refused, and a resume neither crashes nor forgets the ids."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from faceswap_jobs.batches.backfill import backfill
from faceswap_jobs.batches.enqueue import Chunked
from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.config import Settings
from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import SwapRequest
from faceswap_jobs.producer.batch import submit_many
from faceswap_jobs.producer.submit import Producer
from faceswap_jobs.validation import check_identifier, check_metadata
from tests.support.stack import producer_settings

pytestmark = pytest.mark.integration

SRC = "https://img.example.com/src.jpg"
TGT = "https://img.example.com/tgt.jpg"


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


# (JSONL line, None for a good row or a fragment of its reject reason)
CORPUS: list[tuple[str, str | None]] = [
    (f'{{"id":"a","source_image_url":"{SRC}","target_image_url":"{TGT}"}}', None),
    (f'{{"source_image_url":"{SRC}\\ud800","target_image_url":"{TGT}"}}', "U+D800"),
    (f'{{"source_image_url":"{SRC}","target_image_url":"{TGT}","metadata":{_deep(300)}}}',
     "nested deeper"),
    (f'{{"source_image_url":"{SRC}\\u007f","target_image_url":"{TGT}"}}', "U+007F"),
    (f'{{"source_image_url":"{SRC}\\u009b","target_image_url":"{TGT}"}}', "U+009B"),
    (f'{{"id":"x\\u202ey","source_image_url":"{SRC}","target_image_url":"{TGT}"}}', "U+202E"),
    (f'{{"source_image_url":"https://img.example.com/\\u200bs.jpg","target_image_url":"{TGT}"}}',
     "U+200B"),
    (f'{{"source_image_url":"https://user:pass@img.example.com/s.jpg","target_image_url":"{TGT}"}}',
     "credentials"),
    (f'{{"source_image_url":"{SRC}","target_image_url":"{TGT}","timeout":true}}', "timeout"),
    (f'{{"id":"a","source_image_url":"{SRC}","target_image_url":"{TGT}?v=2"}}',
     "already used on line 1"),
    (f'{{"id":"a","source_image_url":"{SRC}","target_image_url":"{TGT}"}}', None),
    (f'{{"id":"b","source_image_url":"{SRC}?b","target_image_url":"{TGT}","note":"\\udc00"}}',
     "surrogate"),
    (f'{{"id":"\\ud83d","source_image_url":"{SRC}","target_image_url":"{TGT}"}}', "U+D83D"),
    (f'{{"source_image_url":"{SRC}?free","target_image_url":"{TGT}","timeout":3}}', None),
    (f'{{"id":"c","source_image_url":"{SRC}?c","target_image_url":"{TGT}","note":"one"}}', None),
    (f'{{"id":"c","source_image_url":"{SRC}?c","target_image_url":"{TGT}","note":"two"}}',
     "already used on line 15"),
]  # fmt: skip
LATER: list[tuple[str, str | None]] = [
    (f'{{"id":"c","source_image_url":"{SRC}?c","target_image_url":"{TGT}","timeout":4}}',
     "already used on line 15"),
    (f'{{"id":"d","source_image_url":"{SRC}?d","target_image_url":"{TGT}"}}', None),
    (f'{{"id":"c","source_image_url":"{SRC}?c","target_image_url":"{TGT}","note":"one"}}', None),
]  # fmt: skip


@pytest.fixture
def hsettings(redis_url: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return producer_settings(redis_url, "http://127.0.0.1:9").model_copy(
        update={"key_prefix": f"t-hostile-{tag}", "bulk_queue": f"t-hostile-{tag}.bulk",
                "interactive_queue": f"t-hostile-{tag}.interactive"}
    )  # fmt: skip


def _messages(client: redis.Redis, queue: str) -> list[list[Any]]:
    """Each queued message's task arguments, decoded as a worker decodes them."""
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(message["body"])
        out.append(args)
    return out


def _rejects(path: Path) -> dict[int, str]:
    with path.open(newline="") as handle:
        return {int(row["line"]): row["reason"] for row in csv.DictReader(handle)}


def _check(client: redis.Redis, settings: Settings, rejects_path: Path,
           corpus: list[tuple[str, str | None]]) -> None:  # fmt: skip
    rejects = _rejects(rejects_path)
    expected = {line: want for line, (_, want) in enumerate(corpus, start=1) if want}
    assert sorted(rejects) == sorted(expected)
    for line, fragment in expected.items():
        assert fragment in rejects[line], (line, rejects[line])
    messages = _messages(client, settings.bulk_queue)
    assert len(messages) == len(corpus) - len(expected)
    for job_id, request, origin, *rest in messages:
        uuid.UUID(job_id)
        SwapRequest.parse(request)
        if rest:
            check_metadata(rest[0])
        if "k" in origin:
            assert check_identifier(origin["k"], "id") == origin["k"]
    progress = BatchStore(client, Keys(settings.key_prefix)).progress("hostile")
    assert progress is not None and progress.enqueue_done
    assert (progress.rows, progress.counts["enqueued"], progress.counts["rejected"]) == (
        len(corpus), len(corpus) - len(expected), len(expected)
    )  # fmt: skip


class _Died(Exception):
    """Stands for a backfill killed between two chunks."""


def test_a_backfill_of_hostile_rows_rejects_each_with_its_reason_and_resumes(
    tmp_path: Path, redis_client: redis.Redis, hsettings: Settings
) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(line + "\n" for line, _ in CORPUS + LATER))
    rejects_path = tmp_path / "rejects.csv"

    def die_after_the_corpus(done: Chunked) -> None:
        if done.rows == len(CORPUS):
            raise _Died

    with pytest.raises(_Died):
        backfill(hsettings, redis_client, path, "hostile", rejects_path, chunk_rows=4,
                 on_chunk=die_after_the_corpus)  # fmt: skip
    progress = BatchStore(redis_client, Keys(hsettings.key_prefix)).progress("hostile")
    assert progress is not None and not progress.enqueue_done and progress.rows == len(CORPUS)

    # The resume goes on at the cursor and still knows the ids of the first run ("c").
    resumed = backfill(hsettings, redis_client, path, "hostile", rejects_path, chunk_rows=2)

    assert resumed.resumed_at_line == len(CORPUS) + 1
    _check(redis_client, hsettings, rejects_path, CORPUS + LATER)
    ids = Keys(hsettings.key_prefix).batch_ids("hostile")
    assert redis_client.pttl(ids) > 0
    assert sorted(redis_client.hkeys(ids)) == ["id:a", "id:c", "id:d"]
    again = backfill(hsettings, redis_client, path, "hostile", rejects_path)
    assert again.already_complete
    _check(redis_client, hsettings, rejects_path, CORPUS + LATER)


def test_submit_many_refuses_a_repeated_id_with_another_request(
    redis_client: redis.Redis, hsettings: Settings
) -> None:
    items: list[Any] = [
        {"id": 1, "source_image_url": SRC, "target_image_url": TGT, "metadata": {"n": 1}},
        {"id": "1", "source_image_url": SRC, "target_image_url": TGT, "metadata": {"n": 2}},
        {"id": 1, "source_image_url": SRC, "target_image_url": TGT, "metadata": {"n": 1}},
        {"source_image_url": SRC + "\ud800", "target_image_url": TGT},
        {"source_image_url": SRC, "target_image_url": TGT, "metadata": json.loads(_deep(300))},
        ("not", "a", "mapping"),
    ]
    batch = submit_many(items, batch="hostile-many", settings=hsettings, client=redis_client)

    rows = batch.progress()
    assert (rows.rows, rows.counts["enqueued"], rows.counts["rejected"]) == (6, 2, 4)
    statuses = [(r["line"], r["status"], r["error_message"]) for r in batch.results()]
    assert [s[1] for s in statuses] == ["queued", "rejected", "queued", "rejected", "rejected",
                                        "rejected"]  # fmt: skip
    assert "already used on line 1" in statuses[1][2]
    assert len(_messages(redis_client, hsettings.bulk_queue)) == 2


HOSTILE_SUBMISSIONS: list[dict[str, Any]] = [
    {"source_image_url": SRC + "\ud800"},
    {"source_image_url": SRC + "\x7f"},
    {"source_image_url": SRC + "\x9b"},
    {"source_image_url": SRC + "\u202e"},
    {"source_image_url": SRC + "\u200b"},
    {"source_image_url": "https://user:pass@img.example.com/a.png"},
    {"timeout": True},
    {"metadata": json.loads(_deep(300))},
    {"metadata": {"a": "\ud800"}},
    {"idempotency_key": "k\ud800"},
    {"idempotency_key": "k\x9b"},
    {"queue": ["bulk"]},
]


@pytest.mark.parametrize("change", HOSTILE_SUBMISSIONS)
def test_submit_swap_refuses_each_hostile_input_and_writes_nothing(
    change: dict[str, Any], redis_client: redis.Redis, hsettings: Settings
) -> None:
    producer = Producer(hsettings)
    kwargs: dict[str, Any] = {"source_image_url": SRC, "target_image_url": TGT, **change}

    with pytest.raises(InvalidSwapRequest):
        producer.submit_swap(**kwargs)

    assert list(redis_client.scan_iter(f"{hsettings.key_prefix}:*")) == []
    assert redis_client.llen(hsettings.interactive_queue) == 0
