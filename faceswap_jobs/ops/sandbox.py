"""Private local services for the demo and the tests: a throwaway redis-server and child processes.

Everything started here binds to 127.0.0.1 on a free port, lives in a temp dir and is stopped by
the context manager that started it, so a demo or a test run never touches a shared Redis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import redis
import requests


class ServiceError(RuntimeError):
    """A local service did not start; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    where = f"; see {log}" if log else ""
    raise ServiceError(f"{what} did not become ready within {timeout_s:g} s{where}")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=1.0).status_code == 200


class ManagedProcess:
    """A child process with its output in a log file; `stop()` asks politely, then kills."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: Mapping[str, str]):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the whole process group, SIGKILL it after `grace_s`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5.0)
        self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@contextlib.contextmanager
def private_redis(workdir: Path | None = None) -> Iterator[str]:
    """A redis-server on a free port in a temp dir; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis-server is not installed: `apt-get install redis-server` (or set "
            "FACESWAP_REDIS_URL to a Redis you own)"
        )
    with tempfile.TemporaryDirectory(prefix="faceswap-redis-", dir=workdir) as tmp:
        port = free_port()
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
            "--save", "", "--appendonly", "no", "--protected-mode", "yes",
        ]  # fmt: skip
        proc = ManagedProcess("redis", argv, Path(tmp) / "redis.log", os.environ)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            wait_until(lambda: bool(client.ping()), 10.0, "redis-server", proc.log_path)
            client.close()
            yield url
        finally:
            proc.stop()
