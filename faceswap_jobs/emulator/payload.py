"""Reading and validating the `POST /face/swap` body.

Everything a hostile client can send ends here as a 400 (or 413) VendorError: bad UTF-8, deep
nesting, NaN, huge numbers. The fields follow the documentation: two image URLs, an optional
`timeout` in seconds and an optional `callback_url`; unknown fields (such as `async`) are kept.
"""

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from .wire import VendorError, is_wire_safe

MAX_BODY_BYTES = 64 * 1024
"""Bodies above this size are answered 413."""

MAX_URL_CHARS = 2048
"""Longest URL accepted in any field."""

RAW_PREVIEW_CHARS = 500
"""How much of a non-JSON (or oversized) body the ledger keeps."""

LEDGER_BODY_MAX_BYTES = 8 * 1024
"""Bodies above this are kept in the ledger as a raw preview only, bounding its memory."""


@dataclass(frozen=True)
class RawBody:
    """The body as received: at most MAX_BODY_BYTES of it, and whether there was more."""

    data: bytes
    too_large: bool


@dataclass(frozen=True)
class SwapRequest:
    """A validated swap request."""

    source_image_url: str
    target_image_url: str
    timeout_s: float | None
    callback_url: str | None


async def read_body(request: Request) -> RawBody:
    """Read up to the cap and drain the rest, so the connection stays usable after a 413."""
    chunks: list[bytes] = []
    size_bytes = 0
    too_large = False
    async for chunk in request.stream():
        if too_large:
            continue
        size_bytes += len(chunk)
        if size_bytes > MAX_BODY_BYTES:
            too_large = True
            chunks.append(chunk[: len(chunk) - (size_bytes - MAX_BODY_BYTES)])
            continue
        chunks.append(chunk)
    return RawBody(b"".join(chunks), too_large)


def ledger_view(raw: RawBody) -> dict[str, Any]:
    """What the ledger records of a body: the JSON object, else its first characters.

    The object is kept only if it can be written back as strict UTF-8 JSON, so the ledger
    endpoint never fails on what a hostile client sent (NaN, lone surrogates, deep nesting),
    and only up to LEDGER_BODY_MAX_BYTES, so a soak of padded bodies cannot exhaust memory.
    """
    text = raw.data[: RAW_PREVIEW_CHARS * 4].decode("utf-8", "replace")[:RAW_PREVIEW_CHARS]
    preview = {"raw": text}
    if raw.too_large or len(raw.data) > LEDGER_BODY_MAX_BYTES:
        return preview
    try:
        parsed = json.loads(raw.data)
    except (ValueError, RecursionError):
        return preview
    if not isinstance(parsed, dict) or not is_wire_safe(parsed):
        return preview
    return parsed


def _bad(message: str) -> VendorError:
    return VendorError(400, "bad_request", message, "bad_request")


def _required_url(body: dict[str, Any], name: str) -> str:
    value = _optional_url(body, name)
    if value is None:
        raise _bad(f"{name} is required")
    return value


def _optional_url(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    if len(value) > MAX_URL_CHARS:
        raise _bad(f"{name} is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise _bad(f"{name} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _bad(f"{name} must be an http or https URL")
    return value


def _timeout_field(body: dict[str, Any]) -> float | None:
    value = body.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad("timeout must be a number of seconds")
    timeout_s = float(value)
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise _bad("timeout must be a finite number of seconds > 0")
    return timeout_s


def parse_swap_request(raw: RawBody) -> SwapRequest:
    """Validate the body or raise the vendor's 400 / 413 answer."""
    if raw.too_large:
        raise VendorError(
            413, "bad_request", f"request body exceeds {MAX_BODY_BYTES} bytes", "too_large"
        )
    try:
        body = json.loads(raw.data)
    except (ValueError, RecursionError):
        raise _bad("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    return SwapRequest(
        source_image_url=_required_url(body, "source_image_url"),
        target_image_url=_required_url(body, "target_image_url"),
        timeout_s=_timeout_field(body),
        callback_url=_optional_url(body, "callback_url"),
    )
