"""The one validator for every way work enters: `submit_swap`, `submit_many` and backfill rows.

Each check raises `InvalidSwapRequest` with a reason a person can act on, so a bad request costs
neither a Redis message nor an API call, and the three entrances cannot disagree about what a
valid request, id or metadata object is.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.models import SwapRequest

MAX_METADATA_BYTES = 4096
"""Size of the metadata serialised as JSON; it lives in the job record, never in the message."""
MAX_METADATA_DEPTH = 8
"""Nesting of metadata objects and arrays: enough for any label, far below a decoder's limit."""
MAX_ID_CHARS = 256
"""A row id or idempotency key ends up in job ids, exports and every report line."""


REQUEST_FIELDS = ("source_image_url", "target_image_url", "timeout")


def swap_request(fields: Mapping[str, Any], *, read_timeout_s: float | None) -> SwapRequest:
    """The request to send, from the untrusted `REQUEST_FIELDS` of `fields` (others are left to
    the caller); the timeout must end before our read timeout cuts a billed call off."""
    data = {name: fields[name] for name in REQUEST_FIELDS if name in fields}
    timeout_s = parse_timeout(data.pop("timeout", None))
    if timeout_s is not None:
        data["timeout"] = timeout_s
    request = SwapRequest.parse(data)
    check_timeout_below(request.timeout, read_timeout_s)
    return request


def check_timeout_below(timeout_s: float | None, read_timeout_s: float | None) -> None:
    """The vendor's processing timeout must end before our read timeout cuts a billed call."""
    if timeout_s is not None and read_timeout_s is not None and timeout_s >= read_timeout_s:
        raise InvalidSwapRequest(
            f"timeout ({timeout_s:g} s) must be below the workers' read timeout "
            f"({read_timeout_s:g} s)"
        )


def parse_timeout(value: Any) -> float | None:
    """A timeout as a file or caller gives it (number or text) in seconds; None when absent.
    The range is `SwapRequest`'s to check."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise InvalidSwapRequest(
                f"timeout: must be a number of seconds, got {shown!r}"
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            raise InvalidSwapRequest("timeout: must be a finite number of seconds") from None
    else:
        raise InvalidSwapRequest("timeout: must be a number of seconds")
    if not math.isfinite(seconds):
        raise InvalidSwapRequest("timeout: must be a finite number of seconds")
    return seconds


def check_metadata(metadata: Any) -> dict[str, Any]:
    """Metadata must be a small JSON object: it is stored with the job and exported with results."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise InvalidSwapRequest("metadata must be a JSON object with string keys")
    if _depth(metadata, MAX_METADATA_DEPTH + 1) > MAX_METADATA_DEPTH:
        raise InvalidSwapRequest(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidSwapRequest(f"metadata is not JSON-serialisable: {exc}") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidSwapRequest(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return metadata


def _depth(value: Any, limit: int) -> int:
    """How deep `value` nests, counting no further than `limit` (so hostile input stays cheap)."""
    if limit <= 0 or not isinstance(value, dict | list):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(child, limit - 1) for child in children), default=0)


def check_identifier(value: Any, what: str) -> str | None:
    """A row id or idempotency key: a string (a row id may be an integer), stripped, printable,
    at most `MAX_ID_CHARS`; None when absent or blank."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidSwapRequest(f"{what} must be a string or an integer")
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        raise InvalidSwapRequest(f"{what} is longer than {MAX_ID_CHARS} characters")
    if not text.isprintable():
        raise InvalidSwapRequest(f"{what} must not contain control characters")
    return text or None


BATCH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_batch_name(name: Any) -> str:
    """A batch name is part of Redis keys (`{prefix}:batch:{name}:rows:0`): `nightly:rows:0`
    would write into batch `nightly`'s keys, so only `[A-Za-z0-9_.-]{1,64}` is a name."""
    if not isinstance(name, str) or not BATCH_NAME.fullmatch(name):
        raise InvalidSwapRequest(
            f"batch name must be 1-64 characters of A-Z a-z 0-9 _ . - (got {name!r:.80})"
        )
    return name


def identity_key(row_id: str | None, request_body: dict[str, Any]) -> str:
    """What makes two rows of a batch the same job: their id, or else their request."""
    if row_id:
        return f"id:{row_id}"
    canonical = json.dumps(request_body, sort_keys=True, separators=(",", ":"))
    return "req:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
