"""One guarded HTTP GET of a URL someone else chose: report thumbnails and the demo's results.

What it guarantees, hop by hop (at most `MAX_REDIRECTS` redirects, each one checked again):
only http(s), no credentials in the URL; the host is resolved here and refused if any of its
addresses is not allowed by the `HostPolicy`; the connection goes to an address that was checked,
so a DNS answer that changes between the check and the connect (rebinding) changes nothing.

Why `http.client` over a socket we connect ourselves rather than `requests`: pinning `requests`
to a vetted address takes a custom adapter, connection pool and TLS hostname override, and it
follows redirects before we can look at them. Here the socket is connected to the vetted address,
TLS is wrapped with the URL's host name as SNI and certificate name (the default context verifies
both), the `Host` header is set from the URL, and a redirect is just another answer we read.

One deadline covers the whole fetch, every hop, connect, TLS, headers and body: a timer shuts the
socket when it passes (`call_deadline`), which ends any blocked read at once, so a trickled body
cannot stretch it (name resolution is the one step it cannot cut short). The body is read in
chunks and refused past `max_bytes`, or before reading when its declared length is already over.
Every failure is a `FetchError` with a short reason that names no address, port or server text.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import ssl
import time
from dataclasses import dataclass
from http import HTTPStatus
from ipaddress import ip_address
from urllib.parse import urljoin, urlsplit, urlunsplit

from requests.utils import requote_uri

from faceswap_jobs.batches.addresses import HostPolicy
from faceswap_jobs.call_deadline import CallDeadline, call_deadline
from faceswap_jobs.errors import FaceSwapError

MAX_REDIRECTS = 3
"""Redirects followed per fetch; a CDN needs one or two, a loop is cut at the fourth."""
CHUNK_BYTES = 64 * 1024
"""Read size while streaming, in bytes: the overshoot past `max_bytes` is at most this."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "faceswap-jobs"
HOST_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
"""What a host may be spelt with once in ASCII: names, IPv4 and IPv6 literals, nothing else."""


class FetchError(FaceSwapError):
    """A fetch failed or was refused; `message` is a one-line reason fit to show to anyone."""


@dataclass(frozen=True)
class Target:
    """The parts of one hop's URL that a request needs, the host already in ASCII."""

    scheme: str
    host: str
    port: int
    request_path: str
    host_header: str


def parse_target(url: str) -> Target:
    """A `Target`, or `FetchError("not an http(s) URL")` for anything a browser would not GET."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = _ascii_host(parts.hostname or "")
        path = requote_uri(urlunsplit(("", "", parts.path or "/", parts.query, "")))
    except ValueError:  # UnicodeError and requests' InvalidURL are ValueErrors too
        raise FetchError("not an http(s) URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or "@" in parts.netloc or not HOST_NAME.fullmatch(host):
        raise FetchError("not an http(s) URL")
    default_port = 443 if scheme == "https" else 80
    bracketed = f"[{host}]" if ":" in host else host
    return Target(
        scheme=scheme,
        host=host,
        port=port or default_port,
        request_path=path,
        host_header=bracketed if port in (None, default_port) else f"{bracketed}:{port}",
    )


def _ascii_host(hostname: str) -> str:
    """An IP literal in its canonical form, or the IDNA (punycode) spelling of a name."""
    try:
        return str(ip_address(hostname))
    except ValueError:
        return hostname.encode("idna").decode("ascii")


def fetch(
    url: str,
    *,
    timeout_s: float,
    max_bytes: int,
    hosts: HostPolicy,
    max_redirects: int = MAX_REDIRECTS,
) -> io.BytesIO:
    """The body of `url` (after redirects), read within `timeout_s` and `max_bytes`, at offset 0."""
    with call_deadline(timeout_s) as deadline:
        ends_at = time.monotonic() + timeout_s
        try:
            body = _follow(url, ends_at, max_bytes, hosts, max_redirects, deadline)
        except (FetchError, OSError, http.client.HTTPException) as exc:
            if deadline.expired or isinstance(exc, TimeoutError):
                raise FetchError(f"timed out after {timeout_s:g} s") from None
            raise FetchError(_reason(exc)) from None
        if deadline.expired:  # the socket was shut mid-body, which reads as an early end
            raise FetchError(f"timed out after {timeout_s:g} s")
    body.seek(0)
    return body


def _follow(
    url: str,
    ends_at: float,
    max_bytes: int,
    hosts: HostPolicy,
    max_redirects: int,
    deadline: CallDeadline,
) -> io.BytesIO:
    for _ in range(max_redirects + 1):
        target = parse_target(url)
        addresses = _resolve(target, hosts)
        connection = http.client.HTTPConnection(target.host, target.port)
        try:
            connection.sock = _connect(target, addresses, ends_at, deadline)
            connection.request("GET", target.request_path, headers=_headers(target))
            with connection.getresponse() as response:  # it holds the socket open until closed
                location = response.getheader("Location")
                if response.status in REDIRECTS and location:
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise FetchError(_status_line(response.status))
                return _read_body(response, max_bytes)
        finally:
            connection.close()
    raise FetchError("too many redirects")


def _resolve(target: Target, hosts: HostPolicy) -> list[tuple[int, tuple]]:
    """Every address of the host, each one allowed, or `FetchError`: one bad address is enough
    to refuse, since which one a later lookup would pick is not ours to choose."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchError("host not found") from None
    if any(hosts.refusal_of(str(sockaddr[0])) is not None for *_, sockaddr in infos):
        raise FetchError("address not allowed")
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def _connect(
    target: Target, addresses: list[tuple[int, tuple]], ends_at: float, deadline: CallDeadline
) -> socket.socket:
    """A socket connected to the first vetted address that answers, TLS-wrapped for https."""
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        deadline.watch(sock)
        sock.settimeout(max(ends_at - time.monotonic(), 0.001))
        try:
            sock.connect(sockaddr)
        except OSError:
            sock.close()
            if deadline.expired:
                raise
            continue
        if target.scheme == "http":
            return sock
        context = ssl.create_default_context()
        tls = context.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
        deadline.watch(tls)
        tls.do_handshake()
        return tls
    raise FetchError("connection failed")


def _headers(target: Target) -> dict[str, str]:
    """http.client adds `Accept-Encoding: identity`: no compressed body to inflate past the cap."""
    return {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Accept": "image/*",
        "Connection": "close",
    }


def _read_body(response: http.client.HTTPResponse, max_bytes: int) -> io.BytesIO:
    declared = (response.getheader("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"larger than {max_bytes} bytes")
    body = io.BytesIO()
    while chunk := response.read(CHUNK_BYTES):
        body.write(chunk)
        if body.tell() > max_bytes:
            raise FetchError(f"larger than {max_bytes} bytes")
    return body


def _status_line(status: int) -> str:
    """The standard phrase, never the server's own text."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, FetchError):
        return exc.message
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate not trusted"
    if isinstance(exc, http.client.HTTPException):
        return "bad HTTP answer"
    return "connection failed"
