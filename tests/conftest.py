"""Real services for the tests: a private redis-server, the emulator and Celery workers.

One redis-server and one emulator per test session; workers per module. Tests isolate themselves
by resetting the emulator's ledger and by using fresh job ids, never by sleeping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from faceswap_jobs.config import Settings
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest
from faceswap_jobs.producer import Producer, SwapJob
from faceswap_jobs.sandbox import (
    ManagedProcess,
    free_port,
    http_ok,
    private_redis,
    python_module,
    wait_until,
)
from faceswap_jobs.store import JobStore

API_TOKEN = "test-token-3f9a1c7e5b2d4086"
"""Distinctive, so a test can grep for it anywhere it must not be."""
TIME_SCALE = 0.001
"""Emulator latency 60-120 s becomes 60-120 ms."""

WORKER_ENV = {
    "FACESWAP_API_TOKEN": API_TOKEN,
    "FACESWAP_BACKOFF_BASE_S": "0.02",
    "FACESWAP_BACKOFF_CAP_S": "0.5",
    "FACESWAP_MAX_ATTEMPTS": "10",
    "FACESWAP_CONNECT_TIMEOUT_S": "2",
    "FACESWAP_READ_TIMEOUT_S": "5",
    "FACESWAP_SOFT_TIME_LIMIT_S": "6",
    "FACESWAP_TIME_LIMIT_S": "7",
    "FACESWAP_VISIBILITY_TIMEOUT_S": "60",
    "FACESWAP_MAX_COUNTDOWN_S": "20",
    "FACESWAP_RETRY_AFTER_CAP_S": "0.2",
    "FACESWAP_RATE_PER_S": "1000",
    "FACESWAP_RATE_FLOOR_PER_S": "100",
    "FACESWAP_MAX_IN_FLIGHT": "500",
}


@dataclass
class Emulator:
    base_url: str
    process: ManagedProcess

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = requests.put(f"{self.base_url}/_emulator/config", json=changes, timeout=5)
        response.raise_for_status()
        return response.json()

    def reset(self, **config: Any) -> None:
        requests.post(f"{self.base_url}/_emulator/reset", timeout=5).raise_for_status()
        defaults = {
            "fault_500": 0.0,
            "fault_429": 0.0,
            "fault_hang": 0.0,
            "fault_reset": 0.0,
            "fault_malformed": 0.0,
            "rate_per_s": None,
            "latency_min_s": 60.0,
            "latency_max_s": 120.0,
            "rules": [],
        }
        self.configure(**{**defaults, **config})

    def ledger(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base_url}/_emulator/ledger", timeout=10)
        response.raise_for_status()
        return response.json()["calls"]

    def sample(self, name: str = "astronaut.png", tag: str = "") -> str:
        """A sample image URL; `tag` makes it unique so ledger entries map to one job."""
        return f"{self.base_url}/samples/{name}" + (f"?tag={tag}" if tag else "")

    def calls_for(self, tag: str) -> list[dict[str, Any]]:
        return [c for c in self.ledger() if f"tag={tag}" in str(c["request"])]


@dataclass
class Stack:
    """Everything a test needs to talk to the running system."""

    redis_url: str
    emulator: Emulator
    logs: Path
    producer: Producer
    workers: list[ManagedProcess] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **WORKER_ENV,
            "FACESWAP_REDIS_URL": self.redis_url,
            "FACESWAP_API_BASE_URL": self.emulator.base_url,
            "FACESWAP_KEY_PREFIX": self.producer.settings.key_prefix,
            **extra,
        }

    def start_worker(self, name: str, *args: str, **env: str) -> ManagedProcess:
        worker = ManagedProcess(
            name,
            python_module("faceswap_jobs", "worker", f"--hostname={name}@%h", *args),
            self.logs / f"{name}.log",
            self.env(**env),
        )
        self.workers.append(worker)
        ping = self.producer.app.control.ping
        wait_until(
            lambda: any(name in node for reply in ping(timeout=0.5) for node in reply),
            60.0,
            f"worker {name}",
            worker.log_path,
        )
        return worker

    def submit_tagged(self, tag: str, count: int) -> list[SwapJob]:
        """`count` jobs whose source URL carries `tag-i`, so ledger calls map to each job."""
        return [
            self.producer.submit_swap(
                self.emulator.sample("astronaut.png", f"{tag}-{i}"), self.emulator.sample()
            )
            for i in range(count)
        ]

    def cli(self, *args: str) -> str:
        """Run `faceswap-jobs ARGS` as an operator would, with this stack's settings."""
        return subprocess.run(
            [sys.executable, "-m", "faceswap_jobs", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    def stop_workers(self) -> None:
        while self.workers:
            self.workers.pop().stop(grace_s=15.0)

    def wait_finished(self, job_ids: list[str], timeout_s: float = 120.0) -> list[JobRecord]:
        """Wait until every job is finished; returns their records in order."""
        records: list[JobRecord] = []

        def all_done() -> bool:
            nonlocal records
            records = [self.producer.get_job(j) for j in job_ids]  # type: ignore[misc]
            return all(r is not None and r.state.finished for r in records)

        wait_until(all_done, timeout_s, f"{len(job_ids)} jobs", None)
        return records


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it")
    with private_redis() as url:
        yield url


@pytest.fixture(scope="session")
def emulator(logs_dir: Path) -> Iterator[Emulator]:
    port = free_port()
    process = ManagedProcess(
        "emulator",
        python_module(
            "faceswap_jobs.emulator",
            *f"--port {port} --tokens {API_TOKEN} --time-scale {TIME_SCALE}".split(),
            *["--seed", "7", "--hang-s", "8"],
        ),
        logs_dir / "emulator.log",
        os.environ,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{base_url}/_emulator/healthz"), 30.0, "emulator", process.log_path)
        yield Emulator(base_url, process)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def settings(redis_url: str, emulator: Emulator) -> Settings:
    """What producers in the tests use: no API token at all, as in an application."""
    return Settings(
        redis_url=redis_url,
        api_base_url=emulator.base_url,
        read_timeout_s=5,
        soft_time_limit_s=6,
        time_limit_s=7,
        visibility_timeout_s=60,
        max_countdown_s=20,
        retry_after_cap_s=2,
        backoff_cap_s=0.5,
    )


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    redis_url: str,
    emulator: Emulator,
    settings: Settings,
    logs_dir: Path,
) -> Iterator[Stack]:
    """Workers for one test module, with a key prefix of its own (limiter state included)."""
    prefix = "t-" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    producer = Producer(settings.model_copy(update={"key_prefix": prefix}))
    stack = Stack(redis_url, emulator, logs_dir, producer)
    try:
        yield stack
    finally:
        stack.stop_workers()


@pytest.fixture
def fresh(emulator: Emulator) -> Emulator:
    """The emulator with an empty ledger and no faults."""
    emulator.reset()
    return emulator


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def unique_tag() -> str:
    return f"t{time.monotonic_ns()}"


def running_job(store: JobStore) -> tuple[JobRecord, Attempt]:
    """A job whose call has started and not ended, as a worker leaves it mid-call."""
    now = time.time()
    record = JobRecord(
        id=unique_tag(),
        state=JobState.QUEUED,
        request=SwapRequest.parse(
            {"source_image_url": "https://x/a.png", "target_image_url": "https://x/b.png"}
        ),
        queue="faceswap.interactive",
        created_at=now,
        updated_at=now,
    )
    store.create(record)
    attempt = Attempt(number=1, started_at=now)
    store.begin_attempt(record.id, attempt)
    return record, attempt
