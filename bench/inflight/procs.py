"""The in-flight bench's services: a slow emulator, the callback receiver, and reading their logs.

`bench.common.stack.emulator` answers in a few ms (the rate-limit bench wants that); here every
swap takes the issue's latency, so a call holds its connection (sync) or its vendor task
(callback) for that long. Every process binds 127.0.0.1, logs to a file and is stopped on the
way out, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common.stack import Emulator
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until

READY_S = 30.0
RECEIVER_STOP_GRACE_S = 10.0
EMULATOR_STOP_GRACE_S = 10.0
PROBLEM = re.compile(r"\b(ERROR|CRITICAL|Traceback|WARNING)\b|Too many|[Cc]onnection pool")
_VARIABLE = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{16,}|\d+(\.\d+)?")


@dataclass(frozen=True)
class SlowEmulator(Emulator):
    """The emulator as the provider, with a fixed latency per swap."""

    log_path: Path
    pid: int

    def callbacks(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base_url}/_emulator/callbacks", timeout=60)
        response.raise_for_status()
        return response.json()["deliveries"]


@contextlib.contextmanager
def slow_emulator(
    token: str,
    *,
    latency_s: float,
    rate_per_s: float | None,
    env: Mapping[str, str],
    log_path: Path,
) -> Iterator[SlowEmulator]:
    """Every swap takes exactly `latency_s` (time scale 1.0); `rate_per_s` None: no limit."""
    port = free_port()
    argv = python_module(
        "faceswap_jobs.emulator",
        *["--port", str(port), "--tokens", token, "--seed", "1", "--image-size", "64"],
        *["--latency-min-s", f"{latency_s:g}", "--latency-max-s", f"{latency_s:g}"],
        *["--time-scale", "1.0"],
    )
    if rate_per_s is not None:
        argv += ["--rate-per-s", f"{rate_per_s:g}", "--burst", str(max(1, round(rate_per_s)))]
    process = ManagedProcess("emulator", argv, log_path, env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{base_url}/_emulator/healthz"), READY_S, "emulator", log_path)
        yield SlowEmulator(base_url, log_path, process.pid)
    finally:
        process.stop(grace_s=EMULATOR_STOP_GRACE_S)


@contextlib.contextmanager
def receiver(
    env: Mapping[str, str], log_path: Path, workers: int = 1
) -> Iterator[tuple[str, ManagedProcess]]:
    """`python -m faceswap_jobs webhook` on a free port; yields its base URL and process."""
    port = free_port()
    argv = python_module("faceswap_jobs", "webhook", "--port", str(port), "--workers", str(workers))
    process = ManagedProcess("receiver", argv, log_path, env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{base_url}/healthz"), READY_S, "receiver", log_path)
        yield base_url, process
    finally:
        process.stop(grace_s=RECEIVER_STOP_GRACE_S)


def code_fingerprint(package: Path) -> str:
    """A short hash of the package's sources: which code a process started with."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def count_in_log(path: Path, until_byte: int, needle: str) -> int:
    """How often `needle` occurs in the first `until_byte` bytes of a log."""
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return handle.read(until_byte).count(needle.encode())


def log_problems(path: Path, until_byte: int, examples: int = 8) -> dict[str, Any]:
    """Warnings, errors and tracebacks a process logged before `until_byte` (the end of the
    measured run, so the noise of being stopped is left out): how many, and the most common
    kinds with one real line each."""
    if not path.exists():
        return {"count": 0, "kinds": []}
    with path.open("rb") as handle:
        text = handle.read(until_byte).decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if PROBLEM.search(line)]
    kinds: Counter[str] = Counter()
    first: dict[str, str] = {}
    for line in lines:
        kind = _VARIABLE.sub("#", line.split(": ", 1)[-1] if "]" in line else line)[:160]
        kinds[kind] += 1
        first.setdefault(kind, line[:400])
    return {
        "count": len(lines),
        "kinds": [{"count": n, "example": first[k]} for k, n in kinds.most_common(examples)],
    }
