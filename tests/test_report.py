"""Thumbnails and the HTML contact sheet, over real HTTP on loopback.

A small threaded server hands out PNGs made with Pillow, a 404, an HTML page, a slow answer, an
oversized one and an endless one, and counts every request it gets.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from faceswap_jobs.batches.addresses import HostPolicy
from faceswap_jobs.batches.report import SheetRow, write_contact_sheet
from faceswap_jobs.batches.thumbnails import (
    ThumbnailError,
    fetch_thumbnail,
    thumbnail_from_file,
    thumbnail_or_none,
)

THUMB_PX = 64
ENDLESS_CAP_BYTES = 64 * 1024 * 1024
"""The endless body stops here so a broken reader fails the test instead of hanging it."""
LOOPBACK = HostPolicy(allow_private_hosts=True)
"""The test server is on loopback, which the default policy refuses (see test_safe_fetch)."""


def _png(width: int, height: int, colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


PNGS = {
    "/a.png": _png(400, 200, "red"),
    "/b.png": _png(150, 300, "green"),
    "/c.png": _png(32, 32, "blue"),
}


@dataclass
class Server:
    base: str
    hits: Counter[str] = field(default_factory=Counter)
    endless_sent: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path


class Handler(BaseHTTPRequestHandler):
    server_state: Server

    def do_GET(self) -> None:
        with self.server_state.lock:
            self.server_state.hits[self.path] += 1
        path = self.path.split("?")[0]
        if path in PNGS:
            self._reply(200, "image/png", PNGS[path])
        elif path == "/page.html":
            self._reply(200, "text/html", b"<html><body>not a picture</body></html>")
        elif path == "/slow.png":
            time.sleep(1.0)
            self._reply(200, "image/png", PNGS["/a.png"])
        elif path == "/declared-huge.png":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif path == "/endless.png":
            self._endless()
        else:
            self._reply(404, "text/plain", b"no such picture")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # a client that gave up (a timeout test) is no error
            self.wfile.write(body)

    def _endless(self) -> None:
        """No Content-Length (HTTP/1.0 reads to close): only the reader can stop this body."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        sent, chunk = 0, b"\0" * 65536
        try:
            while sent < ENDLESS_CAP_BYTES:
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        self.server_state.endless_sent.append(sent)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest output is for failures."""


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Server(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    Handler.server_state = state
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _reason(url: str, **options: Any) -> str:
    with pytest.raises(ThumbnailError) as caught:
        fetch_thumbnail(url, size_px=THUMB_PX, hosts=LOOPBACK, **options)
    return str(caught.value)


# fetch_thumbnail and friends


def test_fetch_shrinks_to_the_long_side_keeping_the_aspect(server: Server) -> None:
    image = fetch_thumbnail(server.url("/a.png"), size_px=THUMB_PX, hosts=LOOPBACK)

    assert (image.mode, image.size) == ("RGB", (64, 32))
    assert image.getpixel((10, 10)) == (255, 0, 0)


def test_fetch_never_enlarges(server: Server) -> None:
    assert fetch_thumbnail(server.url("/c.png"), size_px=THUMB_PX, hosts=LOOPBACK).size == (32, 32)


def test_fetch_stops_reading_past_max_bytes(server: Server) -> None:
    started = time.monotonic()

    reason = _reason(server.url("/endless.png"), max_bytes=100_000)

    assert reason == "larger than 100000 bytes"
    assert time.monotonic() - started < 2.0
    deadline = time.monotonic() + 2.0
    while not server.endless_sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.endless_sent and server.endless_sent[0] < ENDLESS_CAP_BYTES


def test_fetch_refuses_a_declared_oversized_body_before_reading(server: Server) -> None:
    assert _reason(server.url("/declared-huge.png")) == f"larger than {20 * 1024 * 1024} bytes"


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/nothing.png", "HTTP 404 Not Found"), ("/page.html", "not an image")],
)
def test_fetch_failures_have_a_one_line_reason(server: Server, path: str, reason: str) -> None:
    assert _reason(server.url(path)) == reason


def test_fetch_times_out(server: Server) -> None:
    assert _reason(server.url("/slow.png"), timeout_s=0.2) == "timed out after 0.2 s"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "javascript:alert(1)", "//x/a.png", ""])
def test_fetch_only_http(url: str) -> None:
    assert _reason(url) == "not an http(s) URL"


def test_connection_refused_is_a_reason() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as closed:
        port = closed.server_address[1]
    assert _reason(f"http://127.0.0.1:{port}/a.png") == "connection failed"


def test_thumbnail_from_file(tmp_path: Path) -> None:
    picture, text = tmp_path / "b.png", tmp_path / "notes.txt"
    picture.write_bytes(PNGS["/b.png"])
    text.write_text("hello")

    assert thumbnail_from_file(picture, THUMB_PX).size == (32, 64)
    with pytest.raises(ThumbnailError, match="not an image"):
        thumbnail_from_file(text, THUMB_PX)
    assert thumbnail_or_none(text, size_px=THUMB_PX) is None
    assert thumbnail_or_none("ftp://x/y.png", size_px=THUMB_PX) is None


def test_thumbnail_error_rebuilds_from_its_args() -> None:
    error = ThumbnailError("HTTP 404 Not Found")
    assert str(type(error)(*error.args)) == "HTTP 404 Not Found"


# the contact sheet


class Tags(HTMLParser):
    """Which elements the browser would really build: escaped text creates none."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        values = dict(attrs)
        self.srcs += [values["src"] or ""] if "src" in values else []
        self.hrefs += [values["href"] or ""] if "href" in values else []


HOSTILE = "<script>alert(1)</script>"


def _rows(server: Server) -> list[SheetRow]:
    a, b, c = server.url("/a.png"), server.url("/b.png"), server.url("/c.png")
    sneaky = server.url('/a.png?"><script>alert(2)</script>')
    return [
        SheetRow("line 1", "job-1", "succeeded", a, b, c),
        SheetRow(HOSTILE, "job-2", "failed", a, server.url("/gone.png"), None, "<b>boom</b>"),
        SheetRow("line 3", None, "rejected", server.url("/page.html"), "javascript:x", None, "bad"),
        SheetRow("line 4", "job-4", "queued", sneaky, b, None),
    ]


def test_contact_sheet_is_self_contained_and_escaped(server: Server, tmp_path: Path) -> None:
    out = write_contact_sheet(
        _rows(server),
        tmp_path / "sheet.html",
        title=f"batch {HOSTILE}",
        thumb_px=THUMB_PX,
        hosts=LOOPBACK,
    )

    page = out.read_text(encoding="utf-8")
    tags = Tags()
    tags.feed(page)
    assert page.count("<tr><td>") == 4
    assert (tags.tags["script"], tags.tags["b"], tags.tags["img"]) == (0, 0, 6)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;boom&lt;/b&gt;" in page
    assert all(src.startswith("data:image/jpeg;base64,") for src in tags.srcs)
    assert all(href.startswith(server.base) for href in tags.hrefs)
    for src in tags.srcs:
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.format == "JPEG" and max(image.size) <= THUMB_PX
    assert "HTTP 404 Not Found" in page and "not an image" in page
    assert "not an http(s) URL" in page and "no image" in page
    assert re.search(r"4 rows: (\d \w+, ){3}\d \w+\. Generated [\d :-]+ UTC", page)
    assert "1 succeeded" in page and "1 rejected" in page


def test_contact_sheet_fetches_each_url_once(server: Server, tmp_path: Path) -> None:
    progress: list[tuple[int, int]] = []

    def on_progress(done: int, total: int) -> None:
        progress.append((done, total))

    write_contact_sheet(
        _rows(server),
        tmp_path / "sheet.html",
        title="t",
        concurrency=3,
        hosts=LOOPBACK,
        on_progress=on_progress,
    )

    assert server.hits["/a.png"] == 1 and server.hits["/b.png"] == 1
    assert sum(server.hits.values()) == 6
    assert progress[0] == (0, 7) and progress[-1] == (7, 7)
    assert [done for done, _ in progress] == list(range(8))


def test_an_empty_sheet_is_still_a_page(tmp_path: Path) -> None:
    progress: list[tuple[int, int]] = []

    def on_progress(done: int, total: int) -> None:
        progress.append((done, total))

    out = write_contact_sheet([], tmp_path / "empty.html", title="none", on_progress=on_progress)

    assert "0 rows: none." in out.read_text(encoding="utf-8")
    assert progress == [(0, 0)]


def test_a_default_sheet_embeds_nothing_from_internal_hosts(server: Server, tmp_path: Path) -> None:
    out = write_contact_sheet(_rows(server), tmp_path / "sheet.html", title="t")

    page = out.read_text(encoding="utf-8")
    tags = Tags()
    tags.feed(page)
    assert tags.tags["img"] == 0 and sum(server.hits.values()) == 0
    assert page.count("address not allowed") == 8  # 6 distinct URLs, two of them used twice
    assert "not an http(s) URL" in page
