"""Downloading the images named in a swap request, as the real API does before processing.

Any failure to download (refused, timed out, non-2xx, too big, a URL httpx cannot even send)
is one answer at the vendor: 500 `api_error` "fetch failed". So this module turns them all
into `FetchFailed`.
"""

import logging

from .outbound import OutboundHttp

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Images larger than this are refused."""

logger = logging.getLogger(__name__)


class FetchFailed(Exception):
    """An image could not be downloaded; the message says why (for logs, not for clients)."""


async def fetch_image_bytes(outbound: OutboundHttp, url: str) -> bytes:
    """The body at `url` (redirects followed), or FetchFailed."""
    try:
        async with (
            outbound.fetch_slot() as client,
            client.stream("GET", url, follow_redirects=True) as response,
        ):
            if not 200 <= response.status_code < 300:
                raise FetchFailed(f"{url}: HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
                raise FetchFailed(f"{url}: {declared} bytes is over the cap")
            chunks: list[bytes] = []
            size_bytes = 0
            async for chunk in response.aiter_bytes():
                size_bytes += len(chunk)
                if size_bytes > MAX_IMAGE_BYTES:
                    raise FetchFailed(f"{url}: over {MAX_IMAGE_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except FetchFailed:
        raise
    except Exception as exc:
        # httpx raises a wide family (and ValueError / UnicodeError on odd URLs): all of them
        # mean the same thing to the caller of the API.
        logger.debug("fetch of %r failed: %r", url, exc)
        raise FetchFailed(f"{url}: {type(exc).__name__}") from None
