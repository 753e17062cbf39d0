"""Nothing lives forever by accident: after a few thousand jobs (successes, failures and a batch),
every key in Redis has a time to live except queues, Celery's bindings and bounded counters."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import requests

from bench.common.drill import Scenario, system
from faceswap_jobs.ops.sandbox import wait_until
from faceswap_jobs.producer.batch import submit_many

pytestmark = pytest.mark.integration

INTERACTIVE = 1500
BATCH_ROWS = 500
FAIL_EVERY = 10

KEPT = (
    "faceswap.interactive",
    "faceswap.bulk",
    "_kombu.binding*",
    "unacked",
    "unacked_index",
    "faceswap:stats",
    "faceswap:spend:billed",
    "faceswap:parked",
    "faceswap:paused",
    "faceswap:callbacks:waiting",
)
"""Queues (ours, and kombu's ledger of delivered messages, whose entries leave on ack), Celery's
bindings, the waiting lines a job leaves when it moves on, and the hashes of bounded counters
(stats, and billed calls per token and queue)."""


def test_every_key_expires_but_queues_bindings_and_counters(tmp_path: Path) -> None:
    scenario = Scenario("keys", lambda drill: None, 0, latency_s=(0.0, 0.0), workers=1,
                        env={"FACESWAP_MAX_ATTEMPTS": "2"})  # fmt: skip
    with system(scenario, tmp_path) as drill:
        rule = {"source_contains": "fail-", "status": 400, "code": "bad_request"}
        url = f"{drill.emulator.base_url}/_emulator/config"
        requests.put(url, json={"rules": [rule]}, timeout=5).raise_for_status()
        source, target = (
            drill.emulator.sample("astronaut.png"),
            drill.emulator.sample("chelsea.png"),
        )
        ids = [
            drill.producer.submit_swap(
                f"{source}?{'fail-' if i % FAIL_EVERY == 0 else 'ok-'}{i}", target
            ).id
            for i in range(INTERACTIVE)
        ]
        rows = [{"source_image_url": f"{source}?row-{i}", "target_image_url": target}
                for i in range(BATCH_ROWS)]  # fmt: skip
        batch = submit_many(rows, batch="keys", settings=drill.producer.settings)
        batch.wait(timeout=300)
        records = drill.producer.get_job
        wait_until(lambda: all((r := records(i)) and r.state.finished for i in ids), 300.0,
                   "every job to finish", None)  # fmt: skip
        client = drill.producer.redis
        assert client.zcard("faceswap:dlq") == INTERACTIVE // FAIL_EVERY
        forever = sorted(
            key
            for key in client.scan_iter(count=1000)
            if client.pttl(key) == -1 and not any(fnmatch.fnmatch(key, p) for p in KEPT)
        )
        assert client.dbsize() > 2 * (INTERACTIVE + BATCH_ROWS)
    assert forever == [], forever
