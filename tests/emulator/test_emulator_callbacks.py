"""Callback mode: the emulator acknowledges, then POSTs the result to a receiver of the test's
own, and duplicates, loses or reorders deliveries when told to.

Each test resets the emulator (ledger, callbacks, rules, limiter) and restores the baseline
configuration, so tests do not depend on each other's order.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from faceswap_jobs.ops.sandbox import free_port, wait_until
from tests.support.emulator_blackbox import Emulator

pytestmark = pytest.mark.timeout(60)

WAIT_TIMEOUT_S = 10.0


class _CallbackReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.received: list[dict[str, Any]] = []
        self.condition = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        with self.condition:
            self.condition.wait_for(lambda: len(self.received) >= count, WAIT_TIMEOUT_S)
            return list(self.received)


class _CallbackHandler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    server: _CallbackReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.condition:
            self.server.received.append(json.loads(body))
            self.server.condition.notify_all()
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[_CallbackReceiver]:
    server = _CallbackReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def receiver(receiver_server: _CallbackReceiver) -> _CallbackReceiver:
    with receiver_server.condition:
        receiver_server.received.clear()
    return receiver_server


def _wait_until(predicate: Any) -> None:
    wait_until(predicate, WAIT_TIMEOUT_S, "the emulator's deliveries", None)


# --- callbacks -----------------------------------------------------------------------------


def test_callback_mode_acknowledges_then_posts_the_result(
    emulator: Emulator, receiver: _CallbackReceiver
) -> None:
    response = emulator.swap(emulator.default_body(callback_url=receiver.url))

    assert response.status_code == 200
    ack = response.json()
    assert set(ack) == {"task_id"}
    [payload] = receiver.wait_for(1)
    assert set(payload) == {
        "success",
        "task_id",
        "image_url",
        "image_width",
        "image_height",
        "image_size",
    }
    assert payload["success"] is True
    assert payload["task_id"] == ack["task_id"]
    image = requests.get(payload["image_url"], timeout=5)
    assert len(image.content) == payload["image_size"]
    [entry] = emulator.ledger()
    assert (entry["outcome"], entry["status"], entry["task_id"]) == (
        "accepted",
        200,
        ack["task_id"],
    )
    _wait_until(lambda: len(emulator.deliveries(ack["task_id"])) == 1)
    [delivery] = emulator.deliveries(ack["task_id"])
    assert delivery["task_id"] == ack["task_id"]
    assert delivery["url"] == receiver.url
    assert (delivery["status"], delivery["lost"], delivery["duplicate"]) == (200, False, False)


def test_callback_reports_failures_with_the_envelope(
    emulator: Emulator, receiver: _CallbackReceiver
) -> None:
    body = emulator.default_body(
        source_image_url=f"http://127.0.0.1:{free_port()}/gone.png", callback_url=receiver.url
    )

    ack = emulator.swap(body).json()

    [payload] = receiver.wait_for(1)
    assert payload["success"] is False
    assert payload["task_id"] == ack["task_id"]
    assert payload["error"] == {"code": "api_error", "message": "fetch failed"}
    assert uuid.UUID(payload["trace_id"]).version == 4


def test_callback_duplicate_and_loss(emulator: Emulator, receiver: _CallbackReceiver) -> None:
    emulator.configure(callback_duplicate=1.0)
    duplicated = emulator.swap(emulator.default_body(callback_url=receiver.url)).json()
    payloads = receiver.wait_for(2)
    emulator.configure(callback_duplicate=0.0, callback_loss=1.0)
    lost = emulator.swap(emulator.default_body(callback_url=receiver.url)).json()
    mine = (duplicated["task_id"], lost["task_id"])
    _wait_until(lambda: len(emulator.deliveries(*mine)) == 3)

    assert [p["task_id"] for p in payloads] == [duplicated["task_id"]] * 2
    deliveries = emulator.deliveries(*mine)
    assert [(d["task_id"], d["duplicate"], d["lost"]) for d in deliveries] == [
        (duplicated["task_id"], False, False),
        (duplicated["task_id"], True, False),
        (lost["task_id"], False, True),
    ]
    assert deliveries[2]["status"] is None
    assert len(receiver.wait_for(2)) == 2


def test_callback_jitter_reorders_deliveries(
    emulator: Emulator, receiver: _CallbackReceiver
) -> None:
    emulator.configure(callback_jitter_s=400.0)
    acks = []
    for _ in range(12):
        acks.append(emulator.swap(emulator.default_body(callback_url=receiver.url)).json())
        time.sleep(0.01)

    sent = [ack["task_id"] for ack in acks]
    _wait_until(lambda: set(sent) <= {p["task_id"] for p in receiver.wait_for(0)})

    arrived = [p["task_id"] for p in receiver.wait_for(0) if p["task_id"] in sent]
    assert sorted(arrived) == sorted(sent)
    assert arrived != sent
