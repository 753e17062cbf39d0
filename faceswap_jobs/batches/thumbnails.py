"""Small previews of swap images, for the demo's contact sheet and `batch report`.

Previews come from URLs someone else controls, so the download is the guarded `outbound.fetch`
(public addresses only unless the policy says otherwise, one deadline, a byte cap) and the
decode is bounded too: a small file can declare a huge picture (a 169-megapixel PNG of a few
KB decodes to hundreds of MB), so its size is read from the header and refused above
`MAX_PIXELS` before any pixel is decoded, and only common web formats are opened. Every
failure is a `ThumbnailError` whose one-line reason can stand in for the picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from PIL import Image

from faceswap_jobs.batches.addresses import PUBLIC_ONLY, HostPolicy
from faceswap_jobs.batches.outbound import FetchError, fetch
from faceswap_jobs.errors import FaceSwapError

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Largest body read for one preview, in bytes; the API's own images are far smaller."""
MAX_PIXELS = 40_000_000
"""Largest picture decoded, in pixels (width x height): above any camera's usual output, and at
4 bytes a pixel at most 160 MB decoded. Checked on the header, before decoding; a local
stand-in for Pillow's process-wide `Image.MAX_IMAGE_PIXELS`, which is left alone."""
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
"""The formats a preview is made from; Pillow's rarer decoders (EPS runs Ghostscript) are not
offered untrusted bytes."""


class ThumbnailError(FaceSwapError):
    """A preview could not be made; `message` is a one-line reason fit to show in its place."""


def make_thumbnail(image: Image.Image, size_px: int) -> Image.Image:
    """An RGB copy at most `size_px` on its long side, so any source mode can become a JPEG.

    Refuses a picture above `MAX_PIXELS` before decoding it. At most one full-size copy is
    made besides the decoded picture: an RGB or grey one (Pillow resizes RGBA through a full
    premultiplied copy and 1-bit or paletted pictures by nearest neighbour only).
    """
    _check_size(size_px)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ThumbnailError("too many pixels")
    image.draft("RGB", (size_px, size_px))  # JPEG only: decode at reduced scale, much faster
    if image.mode not in ("RGB", "L"):
        image = image.convert("L" if image.mode == "1" else "RGB")
    image.thumbnail((size_px, size_px))
    return image.convert("RGB")


def fetch_thumbnail(
    url: str,
    *,
    size_px: int,
    timeout_s: float = 10.0,
    max_bytes: int = MAX_IMAGE_BYTES,
    hosts: HostPolicy = PUBLIC_ONLY,
) -> Image.Image:
    """Download an http(s) image within `timeout_s` and `max_bytes` and shrink it.

    Raises `ThumbnailError` with the reason: address not allowed, an HTTP status, a timeout, too
    large, too many pixels, not an image.
    """
    _check_size(size_px)
    return thumbnail_from_bytes(fetch_image(url, timeout_s, max_bytes, hosts), size_px)


def fetch_image(url: str, timeout_s: float, max_bytes: int, hosts: HostPolicy) -> IO[bytes]:
    """The undecoded body, so a caller can fetch on many threads and decode on a few."""
    try:
        return fetch(url, timeout_s=timeout_s, max_bytes=max_bytes, hosts=hosts)
    except FetchError as exc:
        raise ThumbnailError(exc.message) from None


def thumbnail_from_bytes(body: IO[bytes], size_px: int) -> Image.Image:
    """The preview of a fetched body; raises `ThumbnailError` like `fetch_thumbnail`."""
    _check_size(size_px)
    return _decode(body, size_px)


def thumbnail_from_file(path: Path, size_px: int) -> Image.Image:
    """A local image's preview; raises `ThumbnailError` like `fetch_thumbnail`."""
    _check_size(size_px)
    try:
        with path.open("rb") as file:
            return _decode(file, size_px)
    except FileNotFoundError:
        raise ThumbnailError(f"no such file: {path.name}") from None


def thumbnail_or_none(
    source: str | Path, *, size_px: int, hosts: HostPolicy = PUBLIC_ONLY
) -> Image.Image | None:
    """For pictures that only illustrate something else: a blank beats a failed run."""
    try:
        if isinstance(source, Path):
            return thumbnail_from_file(source, size_px)
        return fetch_thumbnail(source, size_px=size_px, hosts=hosts)
    except ThumbnailError:
        return None


def _check_size(size_px: int) -> None:
    """A programming error, not a bad picture: raised as such, never turned into a reason."""
    if size_px < 1:
        raise ValueError(f"size_px must be at least 1, not {size_px}")


def _decode(file: IO[bytes], size_px: int) -> Image.Image:
    """Pillow's own bomb check may fire first (a warning or an error, by the warning filters)."""
    try:
        with Image.open(file, formats=IMAGE_FORMATS) as image:
            return make_thumbnail(image, size_px)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ThumbnailError("too many pixels") from None
    except (OSError, ValueError, SyntaxError):
        raise ThumbnailError("not an image") from None
