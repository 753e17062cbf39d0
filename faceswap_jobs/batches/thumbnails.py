"""Small previews of swap images, for the demo's contact sheet and `batch report`.

Previews come from URLs someone else controls, so a download is bounded in time and in size and
read as a stream: a huge or endless body costs at most `max_bytes`, never the whole of it. Every
failure is a `ThumbnailError` whose one-line reason can stand in for the picture.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from PIL import Image
from urllib3.exceptions import ReadTimeoutError

from faceswap_jobs.errors import FaceSwapError

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Largest body read for one preview, in bytes; the API's own images are far smaller."""
CHUNK_BYTES = 64 * 1024
"""Read size while streaming, in bytes: the overshoot past `max_bytes` is at most this."""


class ThumbnailError(FaceSwapError):
    """A preview could not be made; `message` is a one-line reason fit to show in its place."""


def make_thumbnail(image: Image.Image, size_px: int) -> Image.Image:
    """An RGB copy at most `size_px` on its long side, so any source mode can become a JPEG."""
    _check_size(size_px)
    image.draft("RGB", (size_px, size_px))  # JPEG only: decode at reduced scale, much faster
    small = image.convert("RGB")
    small.thumbnail((size_px, size_px))
    return small


def fetch_thumbnail(
    url: str,
    *,
    size_px: int,
    timeout_s: float = 10.0,
    max_bytes: int = MAX_IMAGE_BYTES,
    session: requests.Session | None = None,
) -> Image.Image:
    """Download an http(s) image within `timeout_s` and `max_bytes` and shrink it.

    Raises `ThumbnailError` with the reason: an HTTP status, a timeout, too large, not an image.
    """
    _check_size(size_px)
    _check_url(url)
    return _decode(_download(url, timeout_s, max_bytes, session), size_px)


def thumbnail_from_file(path: Path, size_px: int) -> Image.Image:
    """A local image's preview; raises `ThumbnailError` like `fetch_thumbnail`."""
    _check_size(size_px)
    try:
        with Image.open(path) as image:
            return make_thumbnail(image, size_px)
    except FileNotFoundError:
        raise ThumbnailError(f"no such file: {path.name}") from None
    except Image.DecompressionBombError:
        raise ThumbnailError("too many pixels") from None
    except (OSError, ValueError, SyntaxError):
        raise ThumbnailError("not an image") from None


def thumbnail_or_none(source: str | Path, *, size_px: int) -> Image.Image | None:
    """For pictures that only illustrate something else: a blank beats a failed run."""
    try:
        if isinstance(source, Path):
            return thumbnail_from_file(source, size_px)
        return fetch_thumbnail(source, size_px=size_px)
    except ThumbnailError:
        return None


def _check_size(size_px: int) -> None:
    """A programming error, not a bad picture: raised as such, never turned into a reason."""
    if size_px < 1:
        raise ValueError(f"size_px must be at least 1, not {size_px}")


def _check_url(url: str) -> None:
    """Only the web: no file://, no scheme-relative paths, nothing a browser would not fetch."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ThumbnailError("not an http(s) URL")


def _download(
    url: str, timeout_s: float, max_bytes: int, session: requests.Session | None
) -> bytes:
    """`timeout_s` bounds each wait and, checked between chunks, the whole body too."""
    deadline = time.monotonic() + timeout_s
    get = session.get if session is not None else requests.get
    try:
        with get(url, timeout=timeout_s, stream=True) as response:
            if response.status_code != 200:
                raise ThumbnailError(f"HTTP {response.status_code} {response.reason or ''}".strip())
            _check_declared_length(response, max_bytes)
            body = bytearray()
            for chunk in response.iter_content(CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    raise ThumbnailError(f"larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ThumbnailError(f"timed out after {timeout_s:g} s")
            return bytes(body)
    except requests.RequestException as exc:
        raise ThumbnailError(_request_failure(exc, timeout_s)) from None


def _check_declared_length(response: requests.Response, max_bytes: int) -> None:
    """Refuse before reading anything when the server says up front that the body is too big."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ThumbnailError(f"larger than {max_bytes} bytes")


def _request_failure(exc: requests.RequestException, timeout_s: float) -> str:
    """requests reports a timeout while streaming as a ConnectionError; name it a timeout."""
    wrapped = exc.args[0] if exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(wrapped, ReadTimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    return f"request failed ({type(exc).__name__})"


def _decode(body: bytes, size_px: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(body)) as image:
            return make_thumbnail(image, size_px)
    except Image.DecompressionBombError:
        raise ThumbnailError("too many pixels") from None
    except (OSError, ValueError, SyntaxError):
        raise ThumbnailError("not an image") from None
