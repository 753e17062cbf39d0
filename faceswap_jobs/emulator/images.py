"""The image engine: decode fetched bytes, compose a visible "face swap" PNG.

No face detection: the central ellipse of the source is pasted with a feathered edge over the
centre of the target. That is enough for a human to see which images were combined, and cheap
enough (PNG at low compression) to hold thousands of calls. Functions here are blocking and
CPU-bound; callers run them in a thread.
"""

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

REGION_WIDTH_FRACTION = 0.46
REGION_HEIGHT_FRACTION = 0.58
"""Size of the pasted ellipse relative to the result image."""

SOURCE_CROP_FRACTION = 0.8
"""Share of the source's limiting side taken around its centre: where a portrait's face is."""

MAX_PIXELS = 50_000_000
"""Images above this many pixels are refused before decoding, so one call cannot eat the RAM."""

FEATHER_FRACTION = 0.08
"""Blur radius of the ellipse's edge relative to the ellipse's shorter side."""

PNG_COMPRESS_LEVEL = 1
"""zlib level: fast to write; the files are throwaway test output."""


class UndecodableImage(Exception):
    """The fetched bytes are not an image Pillow can read."""


@dataclass(frozen=True)
class ComposedImage:
    """A result PNG and the numbers the API announces about it."""

    png: bytes
    width_px: int
    height_px: int
    digest: str

    @property
    def size_bytes(self) -> int:
        """What the API calls `image_size`: the byte length of the file."""
        return len(self.png)


def decode_image(data: bytes, max_side_px: int) -> Image.Image:
    """An RGB image shrunk to at most `max_side_px` (all a result needs), or UndecodableImage.

    Shrinking at once keeps the decoded-image cache small whatever the clients send.

    Pillow raises many exception types on hostile input (including decompression-bomb errors),
    so every failure to decode is the client's problem: the vendor answers 400.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise UndecodableImage(f"{opened.width}x{opened.height} px is too large")
            opened.draft("RGB", (max_side_px, max_side_px))
            image = opened.convert("RGB")
    except UndecodableImage:
        raise
    except Exception as exc:
        raise UndecodableImage(f"{type(exc).__name__}: {exc}") from None
    if image.width < 1 or image.height < 1:
        raise UndecodableImage("empty image")
    image.thumbnail((max_side_px, max_side_px))
    return image


def _fit_longest_side(image: Image.Image, longest_side_px: int) -> Image.Image:
    scale = longest_side_px / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _cover_crop(image: Image.Image, width_px: int, height_px: int) -> Image.Image:
    """The central part of `image` with the given aspect ratio, resized to exactly that size."""
    target_ratio = width_px / height_px
    if image.width / image.height > target_ratio:
        crop_h = image.height * SOURCE_CROP_FRACTION
        crop_w = crop_h * target_ratio
    else:
        crop_w = image.width * SOURCE_CROP_FRACTION
        crop_h = crop_w / target_ratio
    left = (image.width - crop_w) / 2
    top = (image.height - crop_h) / 2
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize((width_px, height_px), Image.Resampling.BILINEAR, box=box)


def _feathered_ellipse(width_px: int, height_px: int) -> Image.Image:
    radius_px = max(1.0, FEATHER_FRACTION * min(width_px, height_px))
    inset_px = round(radius_px)
    mask = Image.new("L", (width_px, height_px), 0)
    ImageDraw.Draw(mask).ellipse(
        (inset_px, inset_px, width_px - 1 - inset_px, height_px - 1 - inset_px), fill=255
    )
    return mask.filter(ImageFilter.GaussianBlur(radius_px / 2))


def compose(source: Image.Image, target: Image.Image, longest_side_px: int) -> ComposedImage:
    """The target at `longest_side_px`, with the source's centre pasted over its centre."""
    result = _fit_longest_side(target, longest_side_px)
    region_w = max(2, round(result.width * REGION_WIDTH_FRACTION))
    region_h = max(2, round(result.height * REGION_HEIGHT_FRACTION))
    face = _cover_crop(source, region_w, region_h)
    left = (result.width - region_w) // 2
    top = (result.height - region_h) // 2
    result.paste(face, (left, top), _feathered_ellipse(region_w, region_h))
    buffer = io.BytesIO()
    result.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    png = buffer.getvalue()
    return ComposedImage(
        png=png,
        width_px=result.width,
        height_px=result.height,
        digest=hashlib.sha256(png).hexdigest()[:32],
    )
