"""The simulated swap itself: fetch both images, decode, compose, store, then wait out the
simulated latency.

Shared by synchronous calls and callback mode; every failure is a VendorError carrying the
answer the real API gives for it. Fetch and decode errors come back at once, as they would
from a service that downloads its inputs before queueing the work.
"""

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from PIL import Image

from .fetch import FetchFailed, fetch_image_bytes
from .images import ComposedImage, UndecodableImage, compose, decode_image
from .payload import SwapRequest
from .state import EmulatorState
from .wire import VendorError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapResult:
    """A stored result, with what the API announces about it."""

    task_id: str
    image_url: str
    width_px: int
    height_px: int
    size_bytes: int


def _digest_and_decode(data: bytes, max_side_px: int) -> tuple[str, Image.Image]:
    """Blocking (hash and decode of up to 20 MB): run in a thread."""
    return hashlib.sha256(data).hexdigest(), decode_image(data, max_side_px)


async def _download_and_decode(state: EmulatorState, url: str) -> tuple[str, Image.Image]:
    data = await fetch_image_bytes(state.http, url)
    return await asyncio.to_thread(_digest_and_decode, data, state.config.image_size)


async def _load_image(state: EmulatorState, url: str) -> tuple[str, Image.Image]:
    """The image at `url` with its content digest (for the composite cache), or a VendorError.

    Cached by URL, and concurrent calls naming one URL share one download: a soak of thousands
    of calls on the sample URLs must not spend the event loop re-fetching the same bytes.
    Failures are not cached, and `POST /_emulator/reset` empties the cache.
    """
    try:
        return await state.decoded.get(url, lambda: _download_and_decode(state, url))
    except FetchFailed as exc:
        logger.info("fetch failed: %s", exc)
        raise VendorError(500, "api_error", "fetch failed", "fetch_failed") from None
    except UndecodableImage:
        raise VendorError(400, "bad_request", "image could not be decoded", "undecodable") from None


async def _render(
    state: EmulatorState, request: SwapRequest, task_id: str, public_base_url: str
) -> SwapResult:
    """Fetch, decode, compose and store the result.

    Only the small SwapResult outlives this frame: the decoded images and the PNG bytes are
    released before the long simulated latency, so thousands of calls waiting hold kilobytes
    each, not megabytes.
    """
    (source_digest, source), (target_digest, target) = await asyncio.gather(
        _load_image(state, request.source_image_url),
        _load_image(state, request.target_image_url),
    )
    size_px = state.config.image_size
    composed: ComposedImage = await state.composed.get(
        (source_digest, target_digest, size_px),
        lambda: asyncio.to_thread(compose, source, target, size_px),
    )
    await asyncio.to_thread(state.store.save, task_id, composed.png, composed.digest)
    return SwapResult(
        task_id=task_id,
        image_url=f"{public_base_url}/files/{task_id}.png",
        width_px=composed.width_px,
        height_px=composed.height_px,
        size_bytes=composed.size_bytes,
    )


async def run_swap(
    state: EmulatorState, request: SwapRequest, task_id: str, public_base_url: str
) -> SwapResult:
    """Steps 6-8 of a call; the result PNG is at `{public_base_url}/files/{task_id}.png`.

    The simulated latency (scaled) counts from the start, rendering included. If the request's
    own `timeout` (scaled) is shorter, the call fails when it expires, and its file is removed.
    """
    started_s = time.monotonic()
    config = state.config
    latency_s = state.rng.uniform(config.latency_min_s, config.latency_max_s) * config.time_scale
    result = await _render(state, request, task_id, public_base_url)
    if request.timeout_s is not None and request.timeout_s * config.time_scale < latency_s:
        await asyncio.sleep(
            max(0.0, started_s + request.timeout_s * config.time_scale - time.monotonic())
        )
        await asyncio.to_thread(state.store.discard, task_id)
        raise VendorError(500, "api_error", "processing timed out", "processing_timeout")
    await asyncio.sleep(max(0.0, started_s + latency_s - time.monotonic()))
    return result
