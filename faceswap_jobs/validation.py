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
from faceswap_jobs.models import SwapRequest, hidden_character

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
    """Metadata must be a small JSON object: it is stored with the job and exported with results.

    Only JSON's own types pass (no tuples, sets or non-string keys at any depth, no NaN), and no
    string holds a lone surrogate, which Redis cannot be sent as UTF-8: what is accepted is stored
    and read back unchanged."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidSwapRequest("metadata must be a JSON object with string keys")
    _check_json_value(metadata, MAX_METADATA_DEPTH)
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError, RecursionError):
        raise InvalidSwapRequest("metadata is not JSON-serialisable") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidSwapRequest(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return metadata


_MAX_INT_BITS = MAX_METADATA_BYTES * 4
"""An integer this long has more decimal digits than metadata has bytes (and Python refuses to
print integers of over 4,300 digits): refused before it is ever formatted."""


def _check_json_value(value: Any, depth_left: int) -> None:
    """Walk `value` no deeper than `depth_left` containers, refusing what JSON cannot hold."""
    if isinstance(value, str):
        if _has_surrogate(value):
            raise InvalidSwapRequest("metadata must not contain unpaired surrogate characters")
    elif isinstance(value, dict | list):
        if depth_left <= 0:
            raise InvalidSwapRequest(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    raise InvalidSwapRequest("metadata must be a JSON object with string keys")
                if _has_surrogate(key):
                    raise InvalidSwapRequest(
                        "metadata must not contain unpaired surrogate characters"
                    )
        for child in value.values() if isinstance(value, dict) else value:
            _check_json_value(child, depth_left - 1)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise InvalidSwapRequest(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidSwapRequest(
                "metadata is not JSON: numbers must be finite (no NaN or Infinity)"
            )
    else:
        raise InvalidSwapRequest(
            f"metadata is not JSON: a {type(value).__name__} is not a JSON value"
        )


def _has_surrogate(text: str) -> bool:
    """True when `text` holds a lone surrogate (what a JSON `"\\ud800"` escape decodes to)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def check_identifier(value: Any, what: str) -> str | None:
    """A row id or idempotency key: a string (a row id may be an integer), stripped, printable,
    at most `MAX_ID_CHARS`; None when absent or blank.

    It becomes part of a job id (uuid5), a Redis value and every report line, so nothing hidden
    (controls, bidi overrides, zero-width or blank look-alikes, lone surrogates) may be in it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidSwapRequest(f"{what} must be a string or an integer")
    if isinstance(value, int) and value.bit_length() > MAX_ID_CHARS * 3:
        raise InvalidSwapRequest(f"{what} is longer than {MAX_ID_CHARS} characters")
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        raise InvalidSwapRequest(f"{what} is longer than {MAX_ID_CHARS} characters")
    if hidden := hidden_character(text):
        raise InvalidSwapRequest(
            f"{what} must not contain control, invisible or unpaired surrogate characters "
            f"({hidden})"
        )
    if not text.isprintable():
        raise InvalidSwapRequest(f"{what} must be printable: no whitespace other than spaces")
    return text or None


def submission(
    source_image_url: Any,
    target_image_url: Any,
    *,
    timeout: Any,
    idempotency_key: Any,
    metadata: Any,
    read_timeout_s: float | None,
) -> tuple[SwapRequest, dict[str, Any], str | None]:
    """Everything `submit_swap` is given, checked before anything is written: the request, the
    metadata and the idempotency key (stripped; None when not given)."""
    fields = {"source_image_url": source_image_url, "target_image_url": target_image_url,
              "timeout": timeout}  # fmt: skip
    request = swap_request(fields, read_timeout_s=read_timeout_s)
    checked = check_metadata(metadata)
    key = None
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str):
            raise InvalidSwapRequest("idempotency_key must be a non-empty string")
        key = check_identifier(idempotency_key, "idempotency_key")
        if key is None:
            raise InvalidSwapRequest("idempotency_key must be a non-empty string")
    return request, checked, key


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


def request_fingerprint(request_body: dict[str, Any], metadata: dict[str, Any]) -> str:
    """What a row asks for (URLs, timeout and metadata), hashed: two rows of a batch with one `id`
    must ask for the same thing, or the second is refused rather than silently merged."""
    canonical = json.dumps([request_body, metadata], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
