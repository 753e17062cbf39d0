"""Redis away: producers raise `ServiceUnavailableError` in bounded time (and ride through a
short restart), the CLI prints one line and exits 3, `/metrics` answers 503, and a worker that
Celery stops on an error exits non-zero."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from faceswap_jobs.callbacks.signing import callback_url, new_submission, ticket_for
from faceswap_jobs.config import Settings
from faceswap_jobs.errors import FaceSwapError, ServiceUnavailableError
from faceswap_jobs.ops.sandbox import (
    ManagedProcess,
    RedisServer,
    free_port,
    python_module,
    wait_until,
)
from faceswap_jobs.producer.submit import Producer

pytestmark = pytest.mark.integration

SOURCE, TARGET = "https://img.example.com/a.png", "https://img.example.com/b.png"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis_server = RedisServer(tmp_path, aof=True)
    redis_server.start()
    yield redis_server
    redis_server.stop()


def _dead_url() -> str:
    return f"redis://:sekret-password@127.0.0.1:{free_port()}/0"


def test_a_producer_raises_service_unavailable_without_the_password() -> None:
    producer = Producer(Settings(redis_url=_dead_url(), redis_retry_s=1.0))
    with pytest.raises(ServiceUnavailableError) as caught:
        producer.submit_swap(SOURCE, TARGET)
    assert isinstance(caught.value, FaceSwapError)
    assert caught.value.message.startswith("cannot reach Redis at redis://127.0.0.1:")
    assert "sekret" not in str(caught.value)
    with pytest.raises(ServiceUnavailableError):
        producer.get_job("any")


def test_a_producer_rides_through_a_redis_restart(server: RedisServer) -> None:
    producer = Producer(Settings(redis_url=server.url, redis_retry_s=30.0))
    producer.submit_swap(SOURCE, TARGET)
    server.stop(signal.SIGKILL)
    threading.Timer(3.0, server.start).start()
    job = producer.submit_swap(SOURCE, TARGET)
    record = producer.get_job(job.id)
    assert record is not None and record.request.source_image_url == SOURCE
    assert producer.redis.llen("faceswap.interactive") == 2


@pytest.mark.parametrize("command", [["status", "x"], ["dlq"], ["limits"], ["batch", "list"],
                                     ["submit", SOURCE, TARGET]])  # fmt: skip
def test_every_cli_command_says_one_line_and_exits_3(command: list[str]) -> None:
    env = {**os.environ, "FACESWAP_REDIS_URL": _dead_url()}
    done = subprocess.run(
        [sys.executable, "-m", "faceswap_jobs", *command],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cannot reach Redis at redis://127.0.0.1:")
    assert "sekret" not in done.stderr + done.stdout


def test_metrics_answer_503_while_redis_is_away(server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "FACESWAP_REDIS_URL": server.url}
    argv = python_module("faceswap_jobs", "metrics", "--port", str(port))
    exporter = ManagedProcess("metrics", argv, tmp_path / "metrics.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/metrics", timeout=5).ok, 30.0, "metrics", None)
        assert "faceswap_redis_up 1" in requests.get(f"{url}/metrics", timeout=10).text
        assert requests.get(f"{url}/anything", timeout=5).status_code == 404
        server.stop(signal.SIGKILL)
        down = requests.get(f"{url}/metrics", timeout=30)
        assert down.status_code == 503
        assert "faceswap_redis_up 0" in down.text
        server.start()
        wait_until(lambda: requests.get(f"{url}/metrics", timeout=10).ok, 30.0, "recovery", None)
    finally:
        exporter.stop()


FAILING_WORKER = textwrap.dedent(
    """
    import sys
    from celery import bootsteps
    from faceswap_jobs.celery_app import create_app
    from faceswap_jobs.config import Settings
    from faceswap_jobs.ops.console import run_celery

    class Breaks(bootsteps.StartStopStep):
        def start(self, worker):
            raise RuntimeError("a step failed")

    app = create_app(Settings(redis_url=sys.argv[1]))
    app.steps["worker"].add(Breaks)
    sys.exit(run_celery(app, ["worker", "--pool=solo", "--without-mingle", "--without-gossip"]))
    """
)


def test_a_worker_celery_stops_on_an_error_exits_non_zero(server: RedisServer) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FAILING_WORKER, server.url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Unrecoverable error" in done.stderr + done.stdout, done.stderr[-2000:]
    assert done.returncode != 0


def test_the_receiver_stays_up_and_answers_503_while_redis_is_away(
    server: RedisServer, tmp_path: Path
) -> None:
    port, secret = free_port(), secrets.token_urlsafe(32)
    env = {**os.environ, "FACESWAP_REDIS_URL": server.url, "FACESWAP_WEBHOOK_SECRET": secret,
           "FACESWAP_WEBHOOK_PORT": str(port), "FACESWAP_REDIS_RETRY_S": "2"}  # fmt: skip
    receiver = ManagedProcess(
        "receiver", python_module("faceswap_jobs", "webhook"), tmp_path / "receiver.log", env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/healthz", timeout=5).ok, 30.0, "receiver", None)
        server.stop(signal.SIGKILL)
        health = requests.get(f"{base}/healthz", timeout=30)
        assert health.status_code == 200 and health.json() == {"ok": True, "redis": False}
        body = {"success": True, "task_id": "t-1", "image_url": "https://cdn.example.com/r.png"}
        ticket = ticket_for("job-1", new_submission(), 60.0, time.time())
        answer = requests.post(callback_url(base, secret, ticket), json=body, timeout=30)
        assert answer.status_code == 503
        assert receiver.alive()
    finally:
        receiver.stop()
