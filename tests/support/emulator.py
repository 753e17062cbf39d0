"""The session's emulator: the token it accepts, its time scale, and a handle on its control API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until

API_TOKEN = "test-token-3f9a1c7e5b2d4086"
"""Distinctive, so a test can grep for it anywhere it must not be."""
TIME_SCALE = 0.001
"""Emulator latency 60-120 s becomes 60-120 ms."""


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
            "burst": None,
            "rate_window": "bucket",
            "latency_min_s": 60.0,
            "latency_max_s": 120.0,
            "rules": [],
            "tokens": [API_TOKEN],
            "expired_tokens": [],
            "used_up_tokens": [],
            "disabled_tokens": [],
            "token_rates": {},
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


@contextmanager
def running_emulator(logs_dir: Path) -> Iterator[Emulator]:
    """An emulator process accepting `API_TOKEN`, healthy on entry and stopped on exit."""
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
