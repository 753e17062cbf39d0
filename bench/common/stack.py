"""The bench's services: the emulator (as the provider) and groups of Celery worker processes.

Built on `faceswap_jobs.ops.sandbox`, so every process binds 127.0.0.1, logs to a file and is
stopped by whoever started it, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from celery import Celery

from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until

WORKER_READY_S = 60.0
WORKER_STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class Emulator:
    base_url: str

    def reset(
        self,
        *,
        rate_per_s: float | None,
        burst: int | None = None,
        rate_window: str = "bucket",
        fault_429: float = 0.0,
        retry_after_s: float = 1.0,
        rules: Sequence[Mapping[str, Any]] = (),
        latency_s: float = 0.0,
        token_rates: Mapping[str, float | None] | None = None,
        used_up_tokens: Sequence[str] = (),
    ) -> None:
        """Forget calls, rules and limiter state, then set every setting a bench may have changed.

        `POST /_emulator/reset` keeps the configuration, so each setting is written back
        whatever the previous run left: `rate_per_s` None means no limit, `burst` None one
        second's worth (a sliding window ignores it), `rules` the scripted answers,
        `token_rates` each named token's own rate (the others keep `rate_per_s`) and
        `used_up_tokens` the tokens answered 403 used_up.
        """
        requests.post(f"{self.base_url}/_emulator/reset", timeout=5).raise_for_status()
        self.configure(
            rate_per_s=rate_per_s,
            burst=burst,
            rate_window=rate_window,
            fault_429=fault_429,
            retry_after_s=retry_after_s,
            rules=list(rules),
            latency_min_s=latency_s,
            latency_max_s=latency_s,
            token_rates=dict(token_rates or {}),
            used_up_tokens=list(used_up_tokens),
        )

    def configure(self, **changes: Any) -> None:
        """Change settings of the running emulator (`PUT /_emulator/config`), all or nothing."""
        response = requests.put(f"{self.base_url}/_emulator/config", json=changes, timeout=5)
        response.raise_for_status()

    def ledger(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base_url}/_emulator/ledger", timeout=60)
        response.raise_for_status()
        return response.json()["calls"]

    def sample(self, name: str) -> str:
        return f"{self.base_url}/samples/{name}"


@contextlib.contextmanager
def emulator(
    token: str,
    *,
    rate_per_s: float,
    burst: int,
    logs: Path,
    more_tokens: Sequence[str] = (),
) -> Iterator[Emulator]:
    """The emulator with near-zero latency (a call costs a few ms) and a per-token rate limit,
    accepting `token` and `more_tokens` (a pool's)."""
    port = free_port()
    tokens = ",".join([token, *more_tokens])
    argv = python_module(
        "faceswap_jobs.emulator",
        *["--port", str(port), "--tokens", tokens, "--seed", "1", "--image-size", "64"],
        *["--latency-min-s", "0", "--latency-max-s", "0"],
        *["--rate-per-s", f"{rate_per_s:g}", "--burst", str(burst)],
    )
    process = ManagedProcess("emulator", argv, logs / "emulator.log", os.environ)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{base_url}/_emulator/healthz"), 30.0, "emulator", process.log_path)
        yield Emulator(base_url)
    finally:
        process.stop()


@contextlib.contextmanager
def workers(
    label: str,
    argvs: Mapping[str, list[str]],
    env: Mapping[str, str],
    app: Celery,
    logs: Path,
) -> Iterator[list[ManagedProcess]]:
    """Start one process per node name in `argvs`, wait until each answers a ping, stop them all.

    Logs go to `{label}-{node}.log`, so two contenders reusing a node name keep separate logs.

    Waiting for the pings keeps start-up time out of the measurement: jobs are submitted only
    once every worker is listening.
    """
    started: list[ManagedProcess] = []
    try:
        for name, argv in argvs.items():
            started.append(ManagedProcess(name, argv, logs / f"{label}-{name}.log", env))
        for name, process in zip(argvs, started, strict=True):
            wait_until(_answers_ping(app, name), WORKER_READY_S, f"worker {name}", process.log_path)
        yield started
    finally:
        for process in started:
            process.stop(grace_s=WORKER_STOP_GRACE_S)


def _answers_ping(app: Celery, name: str) -> Any:
    def check() -> bool:
        return any(node.startswith(f"{name}@") for r in app.control.ping(timeout=0.5) for node in r)

    return check
