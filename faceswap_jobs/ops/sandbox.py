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


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis-server is not installed: `apt-get install redis-server` (or set "
            "FACESWAP_REDIS_URL to a Redis you own)"
        )
    return binary


class RedisServer:
    """A redis-server of our own on a fixed port and dir, which can be killed and started again
    there: the same URL and, with an append-only file, the same data, as after a real restart."""

    def __init__(self, directory: Path, *, port: int | None = None, aof: bool = False) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._aof = aof
        self._proc: ManagedProcess | None = None

    def start(self) -> None:
        appendonly = ["yes", "--appendfsync", "everysec"] if self._aof else ["no"]
        argv = [
            _redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "", "--protected-mode", "yes",
            "--appendonly", *appendonly,
        ]  # fmt: skip
        self._proc = ManagedProcess("redis", argv, self.directory / "redis.log", os.environ)
        client = redis.Redis.from_url(self.url)
        try:
            wait_until(lambda: bool(client.ping()), 10.0, "redis-server", self._proc.log_path)
        finally:
            client.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server with `sig` (SIGTERM: it writes and exits; SIGKILL: a crash)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)
        self._proc.stop()
        self._proc = None


@contextlib.contextmanager
def private_redis(workdir: Path | None = None, *, aof: bool = False) -> Iterator[str]:
    """A redis-server on a free port in a temp dir; yields its URL."""
    with redis_server(workdir, aof=aof) as server:
        yield server.url


@contextlib.contextmanager
def redis_server(workdir: Path | None = None, *, aof: bool = False) -> Iterator[RedisServer]:
    """A `RedisServer` in a temp dir, started, and stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="faceswap-redis-", dir=workdir) as tmp:
        server = RedisServer(Path(tmp), aof=aof)
        server.start()
        try:
            yield server
        finally:
            server.stop()
