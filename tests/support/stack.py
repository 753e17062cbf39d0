"""The system under test as one object: redis, the emulator, a producer and the Celery workers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from faceswap_jobs.config import Settings
from faceswap_jobs.models import JobRecord
from faceswap_jobs.ops.sandbox import ManagedProcess, python_module, wait_until
from faceswap_jobs.producer.submit import Producer, SwapJob
from tests.support.emulator import API_TOKEN, Emulator

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


def own_queues(name: str) -> dict[str, str]:
    """Queues for one test module (`t-{name}.interactive`, `.bulk`), so no other module's worker
    takes its messages: as the environment a worker or the CLI needs to use them."""
    return {
        "FACESWAP_INTERACTIVE_QUEUE": f"t-{name}.interactive",
        "FACESWAP_BULK_QUEUE": f"t-{name}.bulk",
    }


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

    def use_queues(self, queues: dict[str, str]) -> None:
        """Send through the queues `own_queues` named (the producer is replaced)."""
        update = {name.removeprefix("FACESWAP_").lower(): queue for name, queue in queues.items()}
        self.producer = Producer(self.producer.settings.model_copy(update=update))

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

    def cli(self, *args: str, **env: str) -> str:
        """Run `faceswap-jobs ARGS` as an operator would, with this stack's settings (and `env`)."""
        return subprocess.run(
            [sys.executable, "-m", "faceswap_jobs", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    def backfill(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run `faceswap-jobs backfill ARGS` as a data engineer would; the caller checks how it
        ended."""
        return subprocess.run(
            [sys.executable, "-m", "faceswap_jobs", "backfill", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def reset_limits(self) -> None:
        """Forget the token's rate, window, breaker and in-flight state: a test starts cold."""
        client = self.producer.redis
        prefix = self.producer.settings.key_prefix
        for pattern in ("rl", "breaker", "inflight"):
            for key in client.scan_iter(f"{prefix}:{pattern}:*"):
                client.delete(key)

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


def producer_settings(redis_url: str, api_base_url: str) -> Settings:
    """What producers in the tests use: no API token at all, as in an application."""
    return Settings(
        redis_url=redis_url,
        api_base_url=api_base_url,
        read_timeout_s=5,
        soft_time_limit_s=6,
        time_limit_s=7,
        visibility_timeout_s=60,
        max_countdown_s=20,
        retry_after_cap_s=2,
        backoff_cap_s=0.5,
    )


@contextmanager
def module_stack(
    module_name: str, redis_url: str, emulator: Emulator, settings: Settings, logs_dir: Path
) -> Iterator[Stack]:
    """A stack for one test module, with a key prefix of its own; its workers stop on exit."""
    prefix = "t-" + module_name.rsplit(".", 1)[-1].removeprefix("test_")
    producer = Producer(settings.model_copy(update={"key_prefix": prefix}))
    stack = Stack(redis_url, emulator, logs_dir, producer)
    try:
        yield stack
    finally:
        stack.stop_workers()
