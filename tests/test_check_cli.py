"""`faceswap-jobs check redis|worker|webhook`, the probes of deploy/k8s and docker-compose.yml,
run as a supervisor runs them (a subprocess, judged by its exit code) against a real Redis, a
real worker and a real receiver: 0 healthy, 1 not answering, 3 Redis away, one line each."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import (
    ManagedProcess,
    RedisServer,
    free_port,
    http_ok,
    python_module,
    wait_until,
)
from tests.support.emulator import Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues

pytestmark = pytest.mark.integration

QUEUES = own_queues("check")
NODE = "checked@%h"
SECRET = "Qm7xT2vK9pL4wZ8nR3bY6cH1jF5sD0gA-uE7iO2k"
LONG_CALLS = {
    "FACESWAP_READ_TIMEOUT_S": "30",
    "FACESWAP_SOFT_TIME_LIMIT_S": "35",
    "FACESWAP_TIME_LIMIT_S": "40",
}
"""Room for calls that outlast a check by far, so the pool is still busy when it ends."""


def check(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceswap_jobs", "check", *args],
        env=stack.env(**QUEUES, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(text: str) -> str:
    [line] = text.splitlines()
    return line


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Stack:
    stack.use_queues(QUEUES)
    stack.start_worker(NODE.split("@")[0], "--concurrency=2", **QUEUES, **LONG_CALLS)
    return stack


@pytest.fixture
def stopped_redis(tmp_path: Path) -> str:
    """The URL of a Redis that ran and was stopped, with a password in it."""
    server = RedisServer(tmp_path)
    server.start()
    server.stop()
    return server.url.replace("redis://", "redis://:sekret-password@")


# --- check redis -----------------------------------------------------------------------------


def test_check_redis_passes_while_redis_answers(stack: Stack) -> None:
    done = check(stack, "redis")

    assert done.returncode == 0, done.stderr
    assert one_line(done.stdout) == "redis: ok"


def test_check_redis_exits_3_with_one_line_when_redis_is_stopped(
    stack: Stack, stopped_redis: str
) -> None:
    done = check(stack, "redis", "--timeout", "1", FACESWAP_REDIS_URL=stopped_redis)

    assert done.returncode == 3
    line = one_line(done.stderr)
    assert line.startswith("cannot reach Redis at redis://127.0.0.1:")
    assert "sekret" not in done.stderr + done.stdout
    assert done.stdout == ""


# --- check worker ----------------------------------------------------------------------------


def test_check_worker_passes_when_this_hosts_node_answers(worker: Stack) -> None:
    done = check(worker, "worker", NODE)

    assert done.returncode == 0, done.stderr
    assert one_line(done.stdout).endswith(": ok")


def test_check_worker_fails_when_no_such_node_answers(worker: Stack) -> None:
    absent = f"absent-{uuid.uuid4().hex}@%h"

    done = check(worker, "worker", absent, "--timeout", "1")

    assert done.returncode == 1
    assert "no answer within 1 s" in one_line(done.stderr)


def test_the_default_node_is_celerys_default_name_for_this_host(worker: Stack) -> None:
    """Without an argument it asks `celery@<this host>`, the node a worker started without
    --hostname is called (a pod's name in Kubernetes): here no such worker runs."""
    done = check(worker, "worker", "--timeout", "1")

    assert done.returncode == 1
    assert one_line(done.stderr).startswith("worker celery@")


def test_check_worker_answers_while_every_thread_is_on_a_call(
    worker: Stack, fresh: Emulator
) -> None:
    """The main thread answers pings while the pool waits on the API: a busy worker is alive."""
    fresh.configure(latency_min_s=10_000, latency_max_s=10_000)  # 10 s at the tests' time scale
    jobs = worker.submit_tagged(unique_tag(), 2)

    def both_threads_busy() -> bool:
        return all(job.record().state == JobState.RUNNING for job in jobs)

    try:
        wait_until(both_threads_busy, 30.0, "two calls in flight", None)

        done = check(worker, "worker", NODE)

        assert done.returncode == 0, done.stderr
        assert both_threads_busy(), "the calls ended before the check did: lengthen them"
        worker.wait_finished([job.id for job in jobs])
    finally:
        fresh.reset()


def test_check_worker_exits_3_when_redis_is_away_unless_told_it_may(
    stack: Stack, stopped_redis: str
) -> None:
    done = check(stack, "worker", NODE, FACESWAP_REDIS_URL=stopped_redis)

    assert done.returncode == 3
    assert one_line(done.stderr).startswith("cannot reach Redis at")

    passed = check(stack, "worker", NODE, "--redis-outage-ok", FACESWAP_REDIS_URL=stopped_redis)

    assert passed.returncode == 0
    assert "not checked, cannot reach Redis" in one_line(passed.stdout)
    assert "sekret" not in done.stderr + passed.stdout


# --- check webhook ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver(stack: Stack) -> Iterator[int]:
    port = free_port()
    process = ManagedProcess(
        "check-webhook",
        python_module("faceswap_jobs", "webhook", "--port", str(port)),
        stack.logs / "check-webhook.log",
        stack.env(FACESWAP_WEBHOOK_SECRET=SECRET),
    )
    try:
        wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), 30.0, "receiver", process.log_path)
        yield port
    finally:
        process.stop()


def test_check_webhook_passes_on_the_receivers_port(stack: Stack, receiver: int) -> None:
    done = check(stack, "webhook", FACESWAP_WEBHOOK_PORT=str(receiver))

    assert done.returncode == 0, done.stderr
    assert one_line(done.stdout) == "webhook: ok (redis up)"


def test_check_webhook_fails_when_nothing_listens(stack: Stack) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"

    done = check(stack, "webhook", "--url", url, "--timeout", "2")

    assert done.returncode == 1
    assert one_line(done.stderr).startswith(f"webhook {url}: no answer")


def test_check_webhook_fails_on_a_status_other_than_200(stack: Stack, emulator: Emulator) -> None:
    url = f"{emulator.base_url}/no-such-path"

    done = check(stack, "webhook", "--url", url)

    assert done.returncode == 1
    assert one_line(done.stderr) == f"webhook {url}: HTTP 404"
