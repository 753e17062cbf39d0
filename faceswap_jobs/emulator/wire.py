"""The vendor's wire format, written by hand from its documentation.

Error envelope (documentation, "Error Response Example"):
``{"success": false, "error": {"code": ..., "message": ...}, "trace_id": ...}``.
"""

import json
import uuid
from typing import Any

from starlette.responses import JSONResponse


class VendorError(Exception):
    """An answer the real API could give: status, error code and message, plus our ledger outcome.

    Raised inside the swap flow and turned into the envelope in one place, so every error body
    has the same shape whatever step produced it.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        outcome: str,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(status, code, message, outcome, retry_after_s)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome
        self.retry_after_s = retry_after_s


def new_id() -> str:
    """A task_id or trace_id: the vendor uses uuid4 strings for both."""
    return str(uuid.uuid4())


def is_wire_safe(value: Any) -> bool:
    """Whether a value can be sent as strict UTF-8 JSON, as Starlette's JSONResponse requires."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def error_body(code: str, message: str, trace_id: str) -> dict[str, Any]:
    """The vendor's error envelope."""
    return {"success": False, "error": {"code": code, "message": message}, "trace_id": trace_id}


def error_response(
    status: int,
    code: str,
    message: str,
    trace_id: str,
    retry_after_s: int | None = None,
) -> JSONResponse:
    """The envelope as an HTTP response, with Retry-After (integer seconds) when given."""
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(error_body(code, message, trace_id), status_code=status, headers=headers)


def vendor_error_response(error: VendorError, trace_id: str) -> JSONResponse:
    """The envelope for a VendorError."""
    return error_response(error.status, error.code, error.message, trace_id, error.retry_after_s)


def success_body(
    task_id: str, image_url: str, width_px: int, height_px: int, size_bytes: int
) -> dict[str, Any]:
    """The synchronous 200 body, field for field as in the documentation's response example."""
    return {
        "image_url": image_url,
        "image_width": width_px,
        "image_height": height_px,
        "image_size": size_bytes,
        "task_id": task_id,
    }


def callback_success_body(
    task_id: str, image_url: str, width_px: int, height_px: int, size_bytes: int
) -> dict[str, Any]:
    """The POST sent to callback_url on success (documentation, "Asynchronous Callback")."""
    return {
        "success": True,
        "task_id": task_id,
        "image_url": image_url,
        "image_width": width_px,
        "image_height": height_px,
        "image_size": size_bytes,
    }


def callback_failure_body(task_id: str, code: str, message: str, trace_id: str) -> dict[str, Any]:
    """The POST sent to callback_url on failure: the error envelope plus the task_id."""
    return {
        "success": False,
        "task_id": task_id,
        "error": {"code": code, "message": message},
        "trace_id": trace_id,
    }
