"""The receiver under attack: slow heads and bodies time out, leavers are quiet, callbacks get in.

One real receiver process (`faceswap-jobs webhook`, one worker so its connection cap is exact) on
loopback with short deadlines; the attackers are raw asyncio sockets in the test process. The log
rate limit and the open-file arithmetic are pure and tested without a server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from faceswap_jobs.callbacks.serving import SPARE_FILES, RateLimitedWarnings, open_files_plan
from faceswap_jobs.callbacks.signing import callback_url, new_submission, ticket_for
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until
from tests.support.stack import Stack

integration = pytest.mark.integration
SECRET = "hardening-Qm3vT8xKp2LwZr9dNf4Hs7YcJb6EaU1g"
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 64
CLOSED_WITHIN = 10
"""A slow client must be closed within this many times its deadline (a behaviour bound only)."""
SLOW_HEAD = (
    b"POST /callbacks/slow?sig=" + b"0" * 64 + b" HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 200
)


@dataclass
class Server:
    process: ManagedProcess
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_size(self) -> int:
        return len(self.process.log_text())

    def log_since(self, offset: int) -> str:
        return self.process.log_text()[offset:]

    def open_sockets(self) -> int:
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        return sum(1 for fd in fd_dir.iterdir() if "socket:" in _readlink(fd))


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


@pytest.fixture(scope="module")
def server(stack: Stack) -> Iterator[Server]:
    port = free_port()
    process = ManagedProcess(
        "webhook-hardening",
        python_module("faceswap_jobs", "webhook", "--port", str(port), "--workers", "1"),
        stack.logs / "webhook-hardening.log",
        stack.env(
            FACESWAP_WEBHOOK_SECRET=SECRET,
            FACESWAP_WEBHOOK_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
            FACESWAP_WEBHOOK_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
            FACESWAP_WEBHOOK_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        ),
    )
    try:
        wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), 30.0, "receiver", process.log_path)
        yield Server(process, port)
    finally:
        process.stop()


async def _closed_after(reader: asyncio.StreamReader, start: float) -> float | None:
    """Seconds from `start` until the server closed (EOF or reset); None if it sent data first."""
    try:
        data = await reader.read(1)
    except ConnectionError:
        data = b""
    return asyncio.get_running_loop().time() - start if data == b"" else None


async def slow_head(port: int, interval_s: float, budget_s: float) -> float | None:
    """Send a request head one byte per `interval_s`; seconds until the server closed, or None."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = loop.time()
    closed = asyncio.ensure_future(_closed_after(reader, start))
    try:
        for byte in SLOW_HEAD:
            if loop.time() - start > budget_s:
                return None
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                return loop.time() - start
            done, _ = await asyncio.wait({closed}, timeout=interval_s)
            if done:
                return closed.result()
        return None
    finally:
        closed.cancel()
        writer.close()


async def slow_body(port: int, path: str, interval_s: float, budget_s: float) -> tuple[bytes, bool]:
    """A complete head, then its body one byte per `interval_s`: (what came back, closed?)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{{"
    writer.write(head.encode())
    start = loop.time()
    answer = asyncio.ensure_future(reader.read())
    try:
        while loop.time() - start < budget_s:
            done, _ = await asyncio.wait({answer}, timeout=interval_s)
            if done:
                return answer.result(), True
            try:
                writer.write(b" ")
                await writer.drain()
            except ConnectionError:
                return b"", True
        return b"", False
    except ConnectionError:
        return b"", True
    finally:
        answer.cancel()
        writer.close()


async def leave_mid_body(port: int, path: str) -> None:
    """Send a head promising 5,000 bytes and 100 of them, then hang up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    try:
        writer.write(head.encode() + b"Content-Length: 5000\r\n\r\n" + b'{"success": true, "x": "')
        writer.write(b"y" * 100)
        await writer.drain()
        await asyncio.sleep(0.05)
    except ConnectionError:
        pass  # closed to make room for others: this client is gone either way
    finally:
        writer.close()


async def waves(clients: list[Coroutine[None, None, None]], size: int) -> None:
    """Run `clients` `size` at a time, so that every one of them reaches the application."""
    for start in range(0, len(clients), size):
        await asyncio.gather(*clients[start : start + size])


def signed_path(job_id: str) -> str:
    """A validly signed callback path for a job nobody waits for: the receiver reads its body."""
    ticket = ticket_for(job_id, new_submission(), 60.0, time.time())
    return callback_url("http://h", SECRET, ticket).removeprefix("http://h")


@integration
def test_slow_heads_are_closed_by_the_server(server: Server) -> None:
    async def attack() -> list[float | None]:
        clients = [slow_head(server.port, 0.5, 20.0) for _ in range(50)]
        return await asyncio.gather(*clients)

    closed_after = asyncio.run(attack())

    assert None not in closed_after, "a slow head kept its connection"
    assert max(t for t in closed_after if t is not None) < CLOSED_WITHIN * HEADER_TIMEOUT_S


@integration
@pytest.mark.parametrize("signed", [True, False], ids=["read-by-the-app", "refused-first"])
def test_a_slow_body_gets_a_408_or_a_close(server: Server, signed: bool) -> None:
    path = signed_path(str(uuid.uuid4())) if signed else f"/callbacks/x?sig={'0' * 64}"

    answer, closed = asyncio.run(slow_body(server.port, path, 0.3, 20.0))

    assert closed
    status = answer.split(b" ", 2)[1] if answer else b""
    assert status in ({b"408", b""} if signed else {b"403"})


@integration
def test_clients_leaving_mid_body_leave_no_error_in_the_log(server: Server) -> None:
    offset = server.log_size()

    async def attack() -> None:
        paths = [signed_path(str(uuid.uuid4())) for _ in range(80)]
        paths += [f"/callbacks/x?sig={'0' * 64}"] * 20
        await waves([leave_mid_body(server.port, p) for p in paths], MAX_CONNECTIONS // 2)

    asyncio.run(attack())
    wait_until(http_ok(f"{server.base_url}/healthz"), 10.0, "receiver", None)

    log = server.log_since(offset)
    assert "Traceback" not in log and "ERROR" not in log and "Exception" not in log, log[:2000]
    assert len(log.splitlines()) <= 2


@integration
def test_good_requests_are_answered_during_an_attack(server: Server) -> None:
    """Twice the connection cap in slow heads, the cap again in slow bodies, 100 leavers: a
    health check, a forged callback and a signed one still get their answers."""
    offset = server.log_size()
    peak_sockets = 0

    def answers() -> tuple[int, int, int]:
        health = requests.get(f"{server.base_url}/healthz", timeout=10)
        forged = f"{server.base_url}/callbacks/{uuid.uuid4()}?sig={'0' * 64}"
        signed = server.base_url + signed_path(str(uuid.uuid4()))
        body = {"success": True}
        return (
            health.status_code,
            requests.post(forged, json=body, timeout=10).status_code,
            requests.post(signed, json=body, timeout=10).status_code,
        )

    async def attack() -> tuple[list[float | None], list[tuple[int, int, int]]]:
        nonlocal peak_sockets
        heads = [slow_head(server.port, 0.5, 20.0) for _ in range(2 * MAX_CONNECTIONS)]
        bodies = [
            slow_body(server.port, signed_path(str(uuid.uuid4())), 0.5, 20.0)
            for _ in range(MAX_CONNECTIONS)
        ]
        slow = asyncio.gather(*heads)
        slow_bodies = asyncio.gather(*bodies)
        await asyncio.sleep(HEADER_TIMEOUT_S / 2)
        leavers = asyncio.gather(
            *(leave_mid_body(server.port, signed_path(str(uuid.uuid4()))) for _ in range(100))
        )
        good = []
        for _ in range(5):
            peak_sockets = max(peak_sockets, server.open_sockets())
            good.append(await asyncio.to_thread(answers))
        await asyncio.gather(leavers, slow_bodies)
        return await slow, good

    closed_after, good = asyncio.run(attack())

    assert good == [(200, 403, 200)] * 5
    assert None not in closed_after, "a slow head kept its connection"
    assert peak_sockets <= MAX_CONNECTIONS + SPARE_FILES
    log = server.log_since(offset)
    assert "Traceback" not in log and "ERROR" not in log, log[:2000]
    assert len(log.splitlines()) <= 3


@integration
@pytest.mark.parametrize(
    "query",
    ["sig=%C3%A9", "sig=%ZZ", "sig=%FF%FE", "sig=" + "é" * 64, "sig=%00", "sig=&sig=x"],
)
@pytest.mark.parametrize("job", ["job-1", "%FF%FE", "%C0%AF", "%00"])
def test_malformed_signatures_and_paths_are_refused_not_500(
    server: Server, query: str, job: str
) -> None:
    response = requests.post(
        f"{server.base_url}/callbacks/{job}?{query}", json={"success": True}, timeout=10
    )

    assert response.status_code in (401, 403)


@integration
def test_non_ascii_bytes_in_the_request_line_are_a_400(server: Server) -> None:
    async def send_raw() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /callbacks/\xff\xfe?sig=\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return answer

    answer = asyncio.run(send_raw())

    assert answer.split(b" ", 2)[1] == b"400"


def _warning(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, message, None, None)


def test_a_repeated_warning_is_logged_once_per_interval_with_a_count() -> None:
    now = [0.0]
    limit = RateLimitedWarnings(60.0, clock=lambda: now[0])

    first = [limit.filter(_warning("Invalid HTTP request received.")) for _ in range(500)]
    other = limit.filter(_warning("Unsupported upgrade request."))
    now[0] = 61.0
    later = _warning("Invalid HTTP request received.")

    assert (first.count(True), other) == (1, True)
    assert limit.filter(later) is True
    assert later.getMessage() == "Invalid HTTP request received. (499 more like it not logged)"


def test_errors_are_never_rate_limited() -> None:
    limit = RateLimitedWarnings(60.0, clock=lambda: 0.0)

    assert all(
        limit.filter(_warning("Exception in ASGI application", logging.ERROR)) for _ in "abc"
    )


@pytest.mark.parametrize(
    ("soft", "hard", "cap", "plan"),
    [
        (1024, 4096, 1000, (1064, 1000)),
        (65536, 65536, 1000, (65536, 1000)),
        (1024, 1024, 1000, (1024, 960)),
        (256, resource.RLIM_INFINITY, 1000, (1064, 1000)),
        (resource.RLIM_INFINITY, resource.RLIM_INFINITY, 1000, (resource.RLIM_INFINITY, 1000)),
        (32, 32, 1000, (32, 1)),
    ],
)
def test_the_open_file_limit_is_raised_to_fit_the_cap_or_the_cap_lowered(
    soft: int, hard: int, cap: int, plan: tuple[int, int]
) -> None:
    assert open_files_plan(soft, hard, cap) == plan
