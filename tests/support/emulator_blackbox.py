"""An emulator of a test module's own, driven as a black box over real HTTP: no mocks.

Unlike the session's emulator (`tests.support.emulator`), it knows tokens in every state the
vendor reports, and its client speaks the vendor's API (`Emulator.swap`) as well as the control API.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from faceswap_jobs.ops.sandbox import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "emulator-token"
SECOND_TOKEN = "second-secret-token"
EXPIRED_TOKEN = "expired-secret-token"
USED_UP_TOKEN = "used-up-secret-token"
DISABLED_TOKEN = "disabled-secret-token"
ALL_TOKENS = (TOKEN, SECOND_TOKEN, EXPIRED_TOKEN, USED_UP_TOKEN, DISABLED_TOKEN)
BASELINE_CONFIG = {
    "fault_500": 0.0,
    "fault_429": 0.0,
    "fault_hang": 0.0,
    "fault_reset": 0.0,
    "fault_malformed": 0.0,
    "retry_after_s": 1.0,
    "rate_per_s": None,
    "token_rates": {},
    "burst": None,
    "rate_window": "bucket",
    "tokens": [TOKEN, SECOND_TOKEN],
    "expired_tokens": [EXPIRED_TOKEN],
    "used_up_tokens": [USED_UP_TOKEN],
    "disabled_tokens": [DISABLED_TOKEN],
    "latency_min_s": 1.0,
    "latency_max_s": 2.0,
    "time_scale": 0.001,
    "callback_delay_s": 0.0,
    "callback_jitter_s": 0.0,
    "callback_loss": 0.0,
    "callback_duplicate": 0.0,
}
STARTUP_TIMEOUT_S = 20.0


@dataclass
class Emulator:
    """A running emulator process."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def sample(self, name: str = "astronaut.png") -> str:
        return self.url(f"/samples/{name}")

    def swap(
        self,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = TOKEN,
        data: bytes | None = None,
        timeout_s: float = 10.0,
    ) -> requests.Response:
        headers = {"accept": "application/json", "content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        payload = data if data is not None else json.dumps(body).encode()
        return requests.post(
            self.url("/face/swap"), data=payload, headers=headers, timeout=timeout_s
        )

    def default_body(self, **extra: Any) -> dict[str, Any]:
        return {
            "source_image_url": self.sample("astronaut.png"),
            "target_image_url": self.sample("chelsea.png"),
            **extra,
        }

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = requests.put(self.url("/_emulator/config"), json=changes, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def ledger(self, **params: Any) -> list[dict[str, Any]]:
        response = requests.get(self.url("/_emulator/ledger"), params=params, timeout=5)
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == len(body["calls"])
        return body["calls"]

    def deliveries(self, *task_ids: str) -> list[dict[str, Any]]:
        """Deliveries of these tasks only: a previous test's delivery may be recorded late."""
        body = requests.get(self.url("/_emulator/callbacks"), timeout=5).json()
        assert body["count"] == len(body["deliveries"])
        return [d for d in body["deliveries"] if d["task_id"] in task_ids]


def start_emulator(log_path: Path, *extra_args: str) -> Emulator:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "faceswap_jobs.emulator",
        "--port",
        str(port),
        "--time-scale",
        "0.001",
        "--latency-min-s",
        "1",
        "--latency-max-s",
        "2",
        *extra_args,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=emulator_env()
        )
    emulator = Emulator(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited: {log_path.read_text()}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(emulator.url("/_emulator/healthz"), timeout=1).json() == {"ok": True}:
                return emulator
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError("emulator did not become healthy")


def emulator_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def stop_emulator(emulator: Emulator) -> str:
    emulator.process.terminate()
    try:
        emulator.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        emulator.process.kill()
        emulator.process.wait()
    return emulator.log_path.read_text()


@contextlib.contextmanager
def module_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The emulator a black-box test module shares; on exit its log must hold no traceback."""
    emulator = start_emulator(
        tmp_path_factory.mktemp("emulator") / "emulator.log",
        "--tokens",
        f"{TOKEN},{SECOND_TOKEN}",
        "--expired-tokens",
        EXPIRED_TOKEN,
        "--used-up-tokens",
        USED_UP_TOKEN,
        "--disabled-tokens",
        DISABLED_TOKEN,
        "--hang-s",
        "5",
        "--image-size",
        "512",
        "--seed",
        "7",
    )
    yield emulator
    log = stop_emulator(emulator)
    assert "Traceback" not in log, log


def reset_to_baseline(emulator: Emulator) -> Emulator:
    """Empty ledger, callbacks, rules and limiter, and the baseline configuration."""
    assert requests.post(emulator.url("/_emulator/reset"), timeout=5).json() == {"ok": True}
    emulator.configure(**BASELINE_CONFIG)
    return emulator


def assert_envelope(
    response: requests.Response, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    """The vendor's error envelope, exactly."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "trace_id"}
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert message in body["error"]["message"]
    assert uuid.UUID(body["trace_id"]).version == 4
    return body


def token_hash(token: str) -> str:
    """How the emulator names a token in its ledger and views (sha256, first 16 hex digits),
    worked out here rather than imported, so a test of what the emulator shows can fail."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]
