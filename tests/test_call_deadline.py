"""A call never outlives its deadline: a server that trickles its headers or its body is cut off
at `read_timeout_s` for the whole call, not per socket read."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from faceswap_jobs.client import FaceSwapClient
from faceswap_jobs.errors import AmbiguousCallError
from faceswap_jobs.models import SwapRequest

BODY = b'{"success": true, "image_url": "https://cdn.example.com/x.png"}'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
TRICKLE_BYTES = 200
"""At one byte per 0.1 s the answer would take 20 s; the deadline is 1 s."""


class Trickler:
    """A loopback server answering one byte at a time (all at once when `done` is set before it
    answers); counts what it managed to send."""

    def __init__(self, answer: bytes, head_at_once: bool) -> None:
        self.answer, self.head_at_once = answer, head_at_once
        self.sent = 0
        self.done = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve_one(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            answer = self.answer
            if self.head_at_once:
                head, _, answer = answer.partition(b"\r\n\r\n")
                conn.sendall(head + b"\r\n\r\n")
            if self.done.is_set():
                conn.sendall(answer)
                self.sent = len(answer)
            try:
                for i in range(len(answer)):
                    conn.sendall(answer[i : i + 1])
                    self.sent += 1
                    if self.done.wait(0.1):
                        break
            except OSError:
                pass
        self.done.set()


@contextmanager
def trickling(answer: bytes, *, head_at_once: bool) -> Iterator[Trickler]:
    server = Trickler(answer, head_at_once)
    thread = threading.Thread(target=server.serve_one, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.done.set()
        thread.join(5)
        server.sock.close()


def _request() -> SwapRequest:
    return SwapRequest.parse(
        {
            "source_image_url": "https://a.example/1.png",
            "target_image_url": "https://a.example/2.png",
        }
    )


@pytest.mark.parametrize("head_at_once", [False, True], ids=["headers-trickled", "body-trickled"])
def test_a_trickled_answer_is_cut_at_the_whole_call_deadline(head_at_once: bool) -> None:
    padded = BODY + b" " * TRICKLE_BYTES
    with trickling(HEAD % len(padded) + padded, head_at_once=head_at_once) as server:
        client = FaceSwapClient(
            f"{server.url}/face/swap", "token-1234567890", connect_timeout_s=1, read_timeout_s=1
        )
        with pytest.raises(AmbiguousCallError) as caught:
            client.swap(_request())
        client.close()
        assert server.done.wait(5), "the client never hung up"
    assert caught.value.code == "read_timeout"
    assert server.sent < TRICKLE_BYTES / 2


def test_an_answer_within_the_deadline_is_read_whole() -> None:
    with trickling(HEAD % len(BODY) + BODY, head_at_once=True) as server:
        server.done.set()
        client = FaceSwapClient(
            f"{server.url}/face/swap", "token-1234567890", connect_timeout_s=1, read_timeout_s=30
        )
        result = client.swap(_request())
        client.close()
    assert result.image_url == "https://cdn.example.com/x.png"
