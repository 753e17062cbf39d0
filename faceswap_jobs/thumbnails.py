"""Small previews of swap images, for the demo's contact sheet and `batch report`.

Quality is judged by eye; a preview must never fail what it illustrates, so every failure is
a reason (shown in place of the picture), not an exception, and a download is bounded in time
and size.
"""

from __future__ import annotations

import io
from pathlib import Path

import requests
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_BYTES = 20 * 1024 * 1024


def thumbnail(image: Image.Image, size_px: int) -> Image.Image:
    image = image.convert("RGB")
    image.thumbnail((size_px, size_px))
    return image


def fetch_thumbnail(
    url: str, size_px: int, *, timeout_s: float = 10.0
) -> tuple[Image.Image | None, str]:
    """(thumbnail, "") or (None, why not): an HTTP status, a timeout, too large, not an image."""
    if not url.startswith(("http://", "https://")):
        return None, "not an http(s) URL"
    try:
        with requests.get(url, timeout=timeout_s, stream=True) as response:
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}"
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_IMAGE_BYTES:
                    return None, f"larger than {MAX_IMAGE_BYTES} bytes"
        return thumbnail(Image.open(io.BytesIO(bytes(body))), size_px), ""
    except requests.RequestException as exc:
        return None, type(exc).__name__
    except (UnidentifiedImageError, OSError):
        return None, "not an image"


def file_thumbnail(path: Path, size_px: int) -> Image.Image | None:
    try:
        return thumbnail(Image.open(path), size_px)
    except OSError:
        return None
