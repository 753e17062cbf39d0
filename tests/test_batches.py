"""Bulk backfills end to end: files → slim messages → a real worker → the emulator → export."""

from __future__ import annotations

import csv
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery.result import AsyncResult

from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import python_module, wait_until
from faceswap_jobs.producer.batch import Batch, submit_many
from tests.support.emulator import Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues

pytestmark = pytest.mark.integration

QUEUES = own_queues("batches")


@pytest.fixture(scope="module")
def bstack(stack: Stack) -> Iterator[Stack]:
    """The module's stack with queues of its own, so no other module's worker takes our rows."""
    stack.use_queues(QUEUES)
    yield stack


@pytest.fixture
def quick(fresh: Emulator) -> Emulator:
    fresh.configure(latency_min_s=0.05, latency_max_s=0.1)
    return fresh


def _write_csv(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _tagged_rows(emulator: Emulator, tag: str, count: int) -> list[dict[str, str]]:
    return [
        {
            "source_image_url": emulator.sample("astronaut.png", f"{tag}-{i}"),
            "target_image_url": emulator.sample(),
            "customer": f"c{i}",
        }
        for i in range(count)
    ]


def _store(stack: Stack) -> BatchStore:
    return BatchStore(stack.producer.redis, Keys(stack.producer.settings.key_prefix))


def _calls_per_row(emulator: Emulator, tag: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in emulator.calls_for(tag):
        source = str(call["request"].get("source_image_url", ""))
        row = source.rsplit("tag=", 1)[-1]
        counts[row] = counts.get(row, 0) + 1
    return counts


def test_rejects_carry_line_numbers_and_are_never_enqueued(
    bstack: Stack, quick: Emulator, tmp_path: Path
) -> None:
    tag = unique_tag()
    good = _tagged_rows(quick, tag, 3)
    rows = [good[0], {"source_image_url": "ftp://nope", "target_image_url": quick.sample()},
            good[1], {"source_image_url": quick.sample(), "target_image_url": ""},
            {**good[2], "timeout": "soon"}]  # fmt: skip
    columns = ["source_image_url", "target_image_url", "timeout", "customer"]
    source = _write_csv(tmp_path / "rows.csv", rows, columns)
    batch = f"rejects-{tag}"

    done = bstack.backfill(str(source), "--batch", batch, "--rejects", str(tmp_path / "r.csv"),
                          **QUEUES)  # fmt: skip

    assert done.returncode == 0, done.stderr
    with (tmp_path / "r.csv").open() as handle:
        rejects = list(csv.DictReader(handle))
    assert [r["line"] for r in rejects] == ["3", "5", "6"]
    assert "source_image_url" in rejects[0]["reason"]
    assert "target_image_url" in rejects[1]["reason"]
    assert "timeout" in rejects[2]["reason"]
    progress = _store(bstack).progress(batch)
    assert progress is not None
    assert (progress.rows, progress.counts["enqueued"], progress.counts["rejected"]) == (5, 2, 3)
    assert bstack.producer.redis.llen(QUEUES["FACESWAP_BULK_QUEUE"]) == 2
    bstack.producer.redis.delete(QUEUES["FACESWAP_BULK_QUEUE"])


def test_killed_backfill_resumes_and_every_row_is_called_once(
    bstack: Stack, quick: Emulator, tmp_path: Path
) -> None:
    """Kill -9 while back-pressure holds the run, resume with a worker draining: the ledger has
    exactly one call per row, the queue never passed the high-water mark, and the export has
    one row per input row in input order."""
    tag = unique_tag()
    rows = _tagged_rows(quick, tag, 120)
    rows[7] = dict(rows[3])  # a duplicate line: same request, same job, one call
    source = _write_csv(tmp_path / "rows.csv", rows,
                        ["source_image_url", "target_image_url", "customer"])  # fmt: skip
    batch = f"resume-{tag}"
    queue = QUEUES["FACESWAP_BULK_QUEUE"]
    env = {**bstack.env(**QUEUES), "FACESWAP_BULK_HIGH_WATER": "40"}
    first = subprocess.Popen(
        python_module("faceswap_jobs", "backfill", str(source), "--batch", batch),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = bstack.producer.redis
    wait_until(lambda: client.llen(queue) >= 30, 60.0, "the queue at its high-water mark", None)
    first.kill()
    first.wait(10)
    store = _store(bstack)
    killed_at = store.progress(batch)
    assert killed_at is not None and 0 < killed_at.rows < 120
    assert client.llen(queue) == killed_at.counts["enqueued"] <= 40

    depths: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_depth, args=(client, queue, depths, stop))
    sampler.start()
    bstack.start_worker("batches", "--concurrency=8", **QUEUES)
    second = subprocess.run(
        python_module("faceswap_jobs", "backfill", str(source), "--batch", batch),
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    stop.set()
    sampler.join()
    assert second.returncode == 0, second.stderr
    assert f"resumed at line {killed_at.cursor_line}" in second.stdout
    final = Batch(batch, bstack.producer.settings, client).wait(timeout=120, poll_s=0.2)

    assert max(depths) <= 40
    assert final.counts["succeeded"] == 119
    assert final.counts["duplicates"] == 1
    assert final.counts["enqueued"] == 120
    assert final.first_start_at is not None and final.last_end_at is not None
    assert final.first_start_at <= final.last_end_at <= final.read_at
    assert final.rate_per_s == pytest.approx(119 / (final.last_end_at - final.first_start_at))
    assert final.eta_s == 0.0
    calls = _calls_per_row(quick, tag)
    assert len(calls) == 119
    assert set(calls.values()) == {1}
    out = tmp_path / "out.csv"
    bstack.cli("batch", "export", batch, str(out))
    with out.open() as handle:
        exported = list(csv.DictReader(handle))
    assert [int(r["line"]) for r in exported] == list(range(2, 122))
    assert {r["status"] for r in exported} == {"succeeded"}
    assert exported[7]["duplicate_of_line"] == "5"
    assert exported[7]["job_id"] == exported[3]["job_id"]
    assert json.loads(exported[0]["metadata"]) == {"customer": "c0"}
    assert exported[0]["error_code"] == exported[0]["duplicate_of_line"] == ""
    lines = tmp_path / "out.jsonl"
    bstack.cli("batch", "export", batch, str(lines))
    typed = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["line"] for r in typed] == list(range(2, 122))
    assert (typed[7]["duplicate_of_line"], typed[0]["duplicate_of_line"]) == (5, None)
    assert typed[0]["metadata"] == {"customer": "c0"}
    assert (typed[0]["calls"], typed[0]["error_code"]) == (1, None)
    assert isinstance(typed[0]["image_width"], int)


def _sample_depth(
    client: redis.Redis, queue: str, depths: list[int], stop: threading.Event
) -> None:
    while not stop.wait(0.01):
        depths.append(client.llen(queue))


def test_interactive_jobs_overtake_a_bulk_backlog(bstack: Stack, fresh: Emulator) -> None:
    """One worker, a backlog of bulk jobs: an application's job submitted after them runs
    while most of the backlog is still queued."""
    fresh.configure(latency_min_s=300, latency_max_s=300)  # 0.3 s at the tests' time scale
    tag = unique_tag()
    bstack.stop_workers()
    bulk = submit_many(_tagged_rows(fresh, tag, 300), batch=f"backlog-{tag}",
                       settings=bstack.producer.settings)  # fmt: skip
    bstack.start_worker("overtake", "--concurrency=4", **QUEUES)
    wait_until(lambda: bulk.progress().counts["started"] >= 4, 30.0, "bulk work to start", None)

    job = bstack.producer.submit_swap(fresh.sample("astronaut.png", f"{tag}-app"), fresh.sample())
    job.result(timeout=60)

    assert bulk.progress().queued > 200
    bulk.cancel()
    drained = bulk.wait(timeout=60, poll_s=0.2)
    assert drained.counts["cancelled_queued"] > 0
    assert (
        drained.counts["succeeded"]
        + drained.counts["cancelled_queued"]
        + drained.counts["cancelled"]
        == 300
    )
    assert len(_calls_per_row(fresh, tag)) == drained.counts["succeeded"] + 1
    rows = list(bulk.results())
    assert {r["status"] for r in rows} == {"succeeded", "cancelled"}
    cancelled = [r for r in rows if r["status"] == "cancelled"]
    assert len(cancelled) == drained.counts["cancelled_queued"] + drained.counts["cancelled"]
    assert all(r["source_image_url"] and r["failure_reason"] for r in cancelled)
    first = cancelled[0]
    record = bstack.producer.get_job(first["job_id"])
    assert record is not None and record.state is JobState.CANCELLED
    assert "cancelled" in bstack.cli("status", first["job_id"])
    revoked = AsyncResult(first["job_id"], app=bstack.producer.app)
    assert revoked.state == "REVOKED"


def test_retry_failed_sends_only_failed_jobs_again(bstack: Stack, fresh: Emulator) -> None:
    fresh.configure(latency_min_s=0.05, latency_max_s=0.1)
    tag = unique_tag()
    fresh.configure(rules=[{"source_contains": f"{tag}-1", "status": 400, "code": "bad_request",
                            "message": "no", "times": 1}])  # fmt: skip
    if not bstack.workers:
        bstack.start_worker("retry", "--concurrency=8", **QUEUES)
    items = [
        {"source_image_url": fresh.sample("astronaut.png", f"{tag}-{i}"),
         "target_image_url": fresh.sample(), "id": f"row-{i}"}
        for i in range(3)
    ]  # fmt: skip
    batch = submit_many([*items, {"source_image_url": "nope"}], batch=f"retry-{tag}",
                        settings=bstack.producer.settings)  # fmt: skip
    first = batch.wait(timeout=60, poll_s=0.2)
    assert (first.counts["succeeded"], first.counts["failed"], first.counts["rejected"]) == (
        2, 1, 1,
    )  # fmt: skip

    assert batch.retry_failed() == 1
    assert batch.retry_failed() == 0
    second = batch.wait(timeout=60, poll_s=0.2)

    assert (second.counts["succeeded"], second.counts["failed"]) == (3, 0)
    assert _calls_per_row(fresh, tag) == {f"{tag}-0": 1, f"{tag}-1": 2, f"{tag}-2": 1}
    results = list(batch.results())
    assert [r["row_id"] for r in results] == ["row-0", "row-1", "row-2", None]
    assert [r["status"] for r in results] == ["succeeded"] * 3 + ["rejected"]
    record = bstack.producer.get_job(results[1]["job_id"])
    assert record is not None and record.state is JobState.SUCCEEDED
    assert record.calls == 2


def test_report_is_a_self_contained_contact_sheet(
    bstack: Stack, quick: Emulator, tmp_path: Path
) -> None:
    if not bstack.workers:
        bstack.start_worker("report", "--concurrency=8", **QUEUES)
    tag = unique_tag()
    items = [
        {
            "source_image_url": quick.sample("astronaut.png", f"{tag}-{i}"),
            "target_image_url": quick.sample(),
            "id": f"<b>{i}</b>",
        }
        for i in range(2)
    ]
    batch = submit_many([*items, {"source_image_url": "nope"}], batch=f"report-{tag}",
                        settings=bstack.producer.settings)  # fmt: skip
    batch.wait(timeout=60, poll_s=0.2)
    out = tmp_path / "sheet.html"

    bstack.cli(
        "batch", "report", batch.name, str(out), "--sample", "10",
        FACESWAP_REPORT_ALLOW_PRIVATE_HOSTS="true",  # the emulator serves the images on loopback
    )  # fmt: skip

    page = out.read_text()
    assert page.count("<tr><td>") == 3
    assert page.count("<img") == 6
    assert page.count("data:image/jpeg;base64,") == 6
    assert "src='http" not in page
    assert "&lt;b&gt;0&lt;/b&gt;" in page and "<b>0</b>" not in page
    assert "2 succeeded" in page and "1 rejected" in page


def test_a_cancel_stops_a_backfill_waiting_at_the_high_water_mark(
    bstack: Stack, quick: Emulator, tmp_path: Path
) -> None:
    """The backfill stops (exit 1, saying why) instead of enqueueing the rest; every row it did
    enqueue ends cancelled once a worker meets it, and the batch is then done."""
    bstack.stop_workers()
    tag = unique_tag()
    source = _write_csv(tmp_path / "rows.csv", _tagged_rows(quick, tag, 200),
                        ["source_image_url", "target_image_url", "customer"])  # fmt: skip
    batch = f"cancel-{tag}"
    client = bstack.producer.redis
    env = {**bstack.env(**QUEUES), "FACESWAP_BULK_HIGH_WATER": "40"}
    running = subprocess.Popen(
        python_module("faceswap_jobs", "backfill", str(source), "--batch", batch),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    queue = QUEUES["FACESWAP_BULK_QUEUE"]
    wait_until(lambda: client.llen(queue) >= 30, 60.0, "the queue at its high-water mark", None)

    bstack.cli("batch", "cancel", batch)
    _, stderr = running.communicate(timeout=60)

    assert running.returncode == 1
    assert "was cancelled" in stderr
    stopped = _store(bstack).progress(batch)
    assert stopped is not None and stopped.counts["enqueued"] <= 40 and not stopped.done
    _, queued_id, line = next(_store(bstack).rows(batch))
    assert queued_id is not None
    said = bstack.cli("status", queued_id)
    assert "queued" in said and "no worker has taken it yet" in said and "cancelled" in said
    assert json.loads(bstack.cli("status", "--json", queued_id)) == {
        "id": queued_id, "state": "queued", "batch": batch, "batch_position": 0,
        "batch_line": line, "batch_cancelled": True,
    }  # fmt: skip
    bstack.start_worker("cancel", "--concurrency=4", **QUEUES)
    final = Batch(batch, bstack.producer.settings, client).wait(timeout=60, poll_s=0.2)
    assert final.done and final.cancelled == final.counts["enqueued"] == stopped.rows
    assert quick.calls_for(tag) == []
    listed = bstack.cli("batch", "list")
    assert "cancelled" in listed and f"{batch} (cancelled)" in listed.replace("\n", "")
