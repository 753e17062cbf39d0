"""Outbound fetches are safe: only public addresses (at every redirect hop), one deadline for the
whole fetch, a byte cap, and a pixel cap checked before anything is decoded.

The test servers are themselves on loopback, so the guard is shown three ways: the default
policy refuses them (directly, by name, through a redirect), a policy that allows private hosts
lets the very same server work, and the address classifier is checked over a table. A policy
that allows exactly 127.0.0.1 stands that server in for a public host redirecting inward.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from PIL import Image

from faceswap_jobs.batches.addresses import PUBLIC_ONLY, HostPolicy, address_kind
from faceswap_jobs.batches.outbound import FetchError, fetch, parse_target
from faceswap_jobs.batches.report import SheetRow, write_contact_sheet
from faceswap_jobs.batches.thumbnails import MAX_PIXELS, ThumbnailError, fetch_thumbnail

THUMB_PX = 64
ALLOW_PRIVATE = HostPolicy(allow_private_hosts=True)
AS_IF_PUBLIC = HostPolicy(also_allowed=frozenset({ip_address("127.0.0.1")}))
"""127.0.0.1 plays a public host; every other private address is still refused."""
TRICKLE_BYTES = 600
"""At one byte per 0.05 s a trickled answer would take 30 s; the deadlines here are 0.5 s."""
HUGE_SIDE = 13_000
"""169 megapixels: the picture the issue measured at 880 MB peak RSS."""


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "purple").save(buffer, "PNG")
    return buffer.getvalue()


def _blank_bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG written row by row: a few KB on disk, `width * height` decoded bytes
    in Pillow, and never a full-size image in this process."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


SMALL_PNG = _png(120, 80)
BODIES = {
    "/img.png": SMALL_PNG,
    "/huge.png": _blank_bilevel_png(HUGE_SIDE, HUGE_SIDE),
    "/over-cap.png": _blank_bilevel_png(8_000, 8_000),
}


@dataclass
class Server:
    base: str
    hits: Counter[str] = field(default_factory=Counter)
    trickle_ended: threading.Event = field(default_factory=threading.Event)
    trickle_sent: list[int] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


class Handler(BaseHTTPRequestHandler):
    state: Server

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self.state.hits[path] += 1
        routes: dict[str, Callable[[], None]] = {
            "/to": lambda: self._redirect(parse_qs(query)["url"][0]),
            "/loop": lambda: self._redirect("/loop"),
            "/banner": self._banner,
            "/declared-huge.png": self._declared_huge,
            "/chunked-endless.png": self._chunked_endless,
            "/trickle-body.png": lambda: self._trickle(head_at_once=True),
            "/trickle-head.png": lambda: self._trickle(head_at_once=False),
        }
        if path in BODIES:
            self._reply(200, BODIES[path])
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            self._redirect(f"/chain/{left - 1}") if left else self._reply(200, SMALL_PNG)
        elif path in routes:
            routes[path]()
        else:
            self._reply(404, b"no such picture")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _banner(self) -> None:
        """What an internal service might answer: its address and software in the status line."""
        self.send_response(500, "redis 10.0.0.5:6379 Redis 7.2")
        self.send_header("Server", "internal-admin/1.0 (10.0.0.5)")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _declared_huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()

    def _chunked_endless(self) -> None:
        """HTTP/1.1 chunked with no end: only the reader's cap can stop it."""
        with contextlib.suppress(OSError):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(1024):
                self.wfile.write(b"10000\r\n" + b"\0" * 0x10000 + b"\r\n")

    def _trickle(self, head_at_once: bool) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Pad: "
        answer = head + b"x" * TRICKLE_BYTES + b"\r\nContent-Length: 0\r\n\r\n"
        if head_at_once:
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TRICKLE_BYTES
            self.wfile.write(answer)
            self.wfile.flush()
            answer = b"\0" * TRICKLE_BYTES
        sent = 0
        try:
            for byte in answer:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                sent += 1
                time.sleep(0.05)
        except OSError:
            pass
        self.state.trickle_sent.append(sent)
        self.state.trickle_ended.set()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest output is for failures."""


@contextlib.contextmanager
def _serving(host: str, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    httpd = ThreadingHTTPServer((host, 0), type("H", (Handler,), {}))
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    state = Server(base=f"{scheme}://{host}:{httpd.server_address[1]}")
    httpd.RequestHandlerClass.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    with _serving("127.0.0.1") as state:
        yield state


@pytest.fixture
def inner() -> Iterator[Server]:
    """A second server on 127.0.0.2: the "internal service" a redirect points at."""
    with _serving("127.0.0.2") as state:
        yield state


def _reason(
    url: str, hosts: HostPolicy = PUBLIC_ONLY, *, timeout_s: float = 5.0, max_bytes: int = 1 << 20
) -> str:
    with pytest.raises(FetchError) as caught:
        fetch(url, hosts=hosts, timeout_s=timeout_s, max_bytes=max_bytes)
    return caught.value.message


def _get(url: str, hosts: HostPolicy) -> bytes:
    return fetch(url, timeout_s=5.0, max_bytes=1 << 20, hosts=hosts).getvalue()


# the address classifier

ADDRESSES = [
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
    ("2002:808:808::1", None),
    ("127.0.0.1", "loopback"),
    ("127.0.0.2", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("2002:7f00:1::1", "loopback"),
    ("64:ff9b::7f00:1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("::ffff:10.0.0.1", "private"),
    ("fd12:3456::1", "private"),
    ("fc00::1", "private"),
    ("2001:db8::1", "private"),
    ("169.254.169.254", "metadata"),
    ("::ffff:169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.192", "metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "shared"),
    ("100.127.255.254", "shared"),
    ("fec0::1", "site-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("64:ff9b::808:808", "reserved"),
]


@pytest.mark.parametrize(("text", "kind"), ADDRESSES)
def test_address_kinds(text: str, kind: str | None) -> None:
    assert address_kind(ip_address(text)) == kind


def test_policies() -> None:
    default, loopback, metadata = (
        PUBLIC_ONLY,
        ip_address("127.0.0.1"),
        ip_address("169.254.169.254"),
    )

    assert default.refusal(ip_address("8.8.8.8")) is None
    assert default.refusal(loopback) == "loopback"
    assert ALLOW_PRIVATE.refusal(loopback) is None
    assert ALLOW_PRIVATE.refusal_of("fe80::1%lo") is None
    assert AS_IF_PUBLIC.refusal(loopback) is None
    assert AS_IF_PUBLIC.refusal(ip_address("127.0.0.2")) == "loopback"
    assert ALLOW_PRIVATE.refusal(metadata) == "metadata"
    assert HostPolicy(also_allowed=frozenset({metadata})).refusal(metadata) == "metadata"


# URLs


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://example.com:70/_x",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//example.com/a.png",
        "http:///a.png",
        "http://user:secret@example.com/a.png",
        "http://@example.com/a.png",
        "http://exa mple.com/a.png",
        "http://example.com:99999/a.png",
        "http://[::1/a.png",
        "http://example.com/\ud800.png",
        "http://" + "a" * 64 + ".example/a.png",
        "",
    ],
)
def test_only_plain_http_urls(url: str) -> None:
    assert _reason(url, ALLOW_PRIVATE) == "not an http(s) URL"


def test_targets_keep_the_name_for_host_and_tls() -> None:
    target = parse_target("https://Bücher.example:8443/a b.png?x=1#frag")

    assert (target.host, target.port) == ("xn--bcher-kva.example", 8443)
    assert target.host_header == "xn--bcher-kva.example:8443"
    assert target.request_path == "/a%20b.png?x=1"
    assert parse_target("http://[::1]/").host_header == "[::1]"
    assert parse_target("https://example.com:443").request_path == "/"


# addresses, directly and at every hop


def test_the_default_refuses_loopback_however_it_is_spelt(server: Server) -> None:
    port = urlsplit(server.base).port
    spellings = ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"]

    reasons = {_reason(f"http://{host}:{port}/img.png") for host in spellings}

    assert reasons == {"address not allowed"}
    assert sum(server.hits.values()) == 0


def test_allowing_private_hosts_lets_the_same_server_work(server: Server) -> None:
    assert _get(server.url("/img.png"), ALLOW_PRIVATE) == SMALL_PNG
    assert _get(server.url("/img.png"), AS_IF_PUBLIC) == SMALL_PNG


def test_a_redirect_into_an_internal_address_is_refused(server: Server, inner: Server) -> None:
    inward = server.url("/to?url=" + quote(inner.url("/img.png"), safe=""))

    assert _reason(inward, AS_IF_PUBLIC) == "address not allowed"
    assert (server.hits["/to"], inner.hits["/img.png"]) == (1, 0)
    assert _get(inward, ALLOW_PRIVATE) == SMALL_PNG
    assert inner.hits["/img.png"] == 1


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "address not allowed"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "address not allowed"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("gopher://127.0.0.1:6379/_INFO", "not an http(s) URL"),
    ],
)
def test_no_redirect_reaches_metadata_or_other_schemes(
    server: Server, location: str, reason: str
) -> None:
    assert _reason(server.url("/to?url=" + quote(location, safe="")), ALLOW_PRIVATE) == reason


def test_redirects_are_followed_three_times_at_most(server: Server) -> None:
    assert _get(server.url("/chain/3"), AS_IF_PUBLIC) == SMALL_PNG
    assert _reason(server.url("/chain/4"), AS_IF_PUBLIC) == "too many redirects"
    assert _reason(server.url("/loop"), AS_IF_PUBLIC) == "too many redirects"
    assert server.hits["/loop"] == 4


def test_failure_reasons_carry_no_server_text(server: Server) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]

    assert _reason(server.url("/banner"), ALLOW_PRIVATE) == "HTTP 500 Internal Server Error"
    assert _reason(f"http://127.0.0.1:{port}/x.png", ALLOW_PRIVATE) == "connection failed"
    assert _reason("http://no-such-host.invalid/x.png") == "host not found"


# time and size


@pytest.mark.parametrize("path", ["/trickle-body.png", "/trickle-head.png"])
def test_a_trickled_answer_ends_at_the_whole_fetch_deadline(server: Server, path: str) -> None:
    started = time.monotonic()

    reason = _reason(server.url(path), ALLOW_PRIVATE, timeout_s=0.5)

    assert reason == "timed out after 0.5 s"
    assert time.monotonic() - started < 5.0  # the answer would trickle on for 30 s
    assert server.trickle_ended.wait(5.0)
    assert server.trickle_sent[0] < TRICKLE_BYTES


@pytest.mark.parametrize("path", ["/chunked-endless.png", "/declared-huge.png"])
def test_bodies_stop_at_the_byte_cap(server: Server, path: str) -> None:
    assert _reason(server.url(path), ALLOW_PRIVATE, max_bytes=100_000) == "larger than 100000 bytes"


# pixels


def test_the_test_pictures_are_small_files_of_many_pixels() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(BODIES["/huge.png"])) as huge:
            assert huge.size == (HUGE_SIDE, HUGE_SIDE)
    with Image.open(io.BytesIO(BODIES["/over-cap.png"])) as over:
        assert over.size[0] * over.size[1] > MAX_PIXELS
    assert len(BODIES["/huge.png"]) < 1 << 20


@pytest.mark.parametrize("path", ["/huge.png", "/over-cap.png"])
def test_too_many_pixels_is_refused(server: Server, path: str) -> None:
    with pytest.raises(ThumbnailError, match=r"^too many pixels$"):
        fetch_thumbnail(server.url(path), size_px=THUMB_PX, hosts=ALLOW_PRIVATE)


PEAK_RSS_SCRIPT = """
import sys
from faceswap_jobs.batches.addresses import HostPolicy
from faceswap_jobs.batches.thumbnails import ThumbnailError, fetch_thumbnail
try:
    fetch_thumbnail(sys.argv[1], size_px=64, hosts=HostPolicy(allow_private_hosts=True))
    print("decoded")
except ThumbnailError as exc:
    print(exc.message)
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024)
"""
"""The peak is VmHWM, which starts afresh with the new program: Linux keeps `ru_maxrss` across
fork and exec, so a child of a large test process would report its parent's size."""


def test_a_169_megapixel_png_is_refused_before_it_is_decoded(server: Server) -> None:
    """In a fresh interpreter with Pillow's default warning filters (so our cap, not Pillow's
    warning, refuses it): the peak RSS stays below the picture's decoded size."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}

    run = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, server.url("/huge.png")],
        capture_output=True, text=True, check=True, cwd=root, env=env, timeout=120,
    )  # fmt: skip

    reason, peak_mb = run.stdout.split("\n")[:2]
    assert reason == "too many pixels"
    assert int(peak_mb) < HUGE_SIDE * HUGE_SIDE // 2**20  # one byte a pixel decoded: 161 MiB


# https: the connection is pinned to the vetted address, the certificate checked against the name


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` only (no IP address in it)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [
        *("openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=localhost"),
        *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with _serving("127.0.0.1", tls=context) as state:
        yield state


def test_https_checks_the_certificate_against_the_url_name(
    tls_server: Server, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    by_name = tls_server.url("/img.png").replace("127.0.0.1", "localhost")

    assert _reason(by_name, ALLOW_PRIVATE) == "certificate not trusted"
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    assert _get(by_name, ALLOW_PRIVATE) == SMALL_PNG
    assert _reason(tls_server.url("/img.png"), ALLOW_PRIVATE) == "certificate not trusted"
    assert _reason(by_name) == "address not allowed"


def test_a_report_shows_refusals_in_place_of_pictures(
    server: Server, inner: Server, tmp_path: Path
) -> None:
    inward = server.url("/to?url=" + quote(inner.url("/img.png"), safe=""))
    rows = [
        SheetRow(
            "big", None, "succeeded", server.url("/huge.png"), server.url("/over-cap.png"), None
        ),
        SheetRow("ok", None, "succeeded", server.url("/img.png"), inward, None),
    ]

    page = write_contact_sheet(rows, tmp_path / "s.html", title="t", hosts=AS_IF_PUBLIC).read_text()

    assert page.count("<img ") == 1 and page.count("too many pixels") == 2
    assert page.count("address not allowed") == 1 and inner.hits["/img.png"] == 0
