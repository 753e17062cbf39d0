"""A worker child killed with SIGKILL in the middle of a call loses no job."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import wait_until
from tests.support.emulator import Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def prefork(stack: Stack) -> Stack:
    stack.start_worker("prefork", "--pool=prefork", "--concurrency=1")
    return stack


def test_sigkilled_child_mid_call_is_redelivered_and_ends_succeeded(
    prefork: Stack, fresh: Emulator
) -> None:
    fresh.configure(latency_min_s=4000.0, latency_max_s=4000.0)
    tag = unique_tag()
    job = prefork.producer.submit_swap(fresh.sample("astronaut.png", tag), fresh.sample())
    wait_until(lambda: len(fresh.calls_for(tag)) == 1, 30.0, "the first call", None)
    wait_until(lambda: job.status() is JobState.RUNNING, 10.0, "the job to run", None)
    worker = prefork.workers[-1]
    children = children_of(worker.pid)
    assert len(children) == 1

    os.kill(children[0], signal.SIGKILL)
    fresh.configure(latency_min_s=60.0, latency_max_s=120.0)
    record = prefork.wait_finished([job.id], timeout_s=120)[0]

    assert record.state is JobState.SUCCEEDED
    assert [a.outcome for a in record.history] == ["interrupted", "succeeded"]
    assert record.history[0].error is not None
    assert record.history[0].error["code"] == "worker_lost"
    assert (record.calls, record.attempts) == (2, 2)
    assert len(fresh.calls_for(tag)) == 2
    assert worker.alive()
    assert "SIGKILL" in worker.log_text()
