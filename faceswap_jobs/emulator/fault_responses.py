"""Answers that break the contract on purpose: a reset connection and malformed 200s.

A reset is a 200 whose body stops short of its Content-Length, followed by an exception: uvicorn
then closes the transport, so the client sees a truncated answer (requests raises
ChunkedEncodingError). uvicorn logs every such exception with a traceback at ERROR level;
`QuietSimulatedResets` drops exactly those records, so a drill that injects resets does not
bury real errors in fake ones.
"""

import json
import logging

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

UVICORN_ERROR_LOGGER = "uvicorn.error"

_RESET_BODY = json.dumps({"image_url": "https://", "image_width": 512}).encode()
_RESET_DECLARED_BYTES = 4096

_MALFORMED_HTML = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


class SimulatedReset(Exception):
    """Raised after a partial response so the server aborts the connection."""


class ResetResponse(Response):
    """Starts a 200, sends part of the body, then aborts."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(_RESET_DECLARED_BYTES).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _RESET_BODY, "more_body": True})
        raise SimulatedReset("simulated connection reset")


def malformed_response(serial: int, task_id: str) -> Response:
    """A 200 that breaks the contract: alternately an HTML page and JSON without `image_url`."""
    if serial % 2 == 0:
        return HTMLResponse(_MALFORMED_HTML, status_code=200)
    return JSONResponse({"task_id": task_id, "image_width": 512, "image_height": 512})


class QuietSimulatedResets(logging.Filter):
    """Drops uvicorn's error records caused by SimulatedReset (and only those)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        return not (exc_info and isinstance(exc_info[1], SimulatedReset))


def install_reset_log_filter() -> QuietSimulatedResets:
    """Attach the filter to uvicorn's error logger; returns it so it can be removed."""
    log_filter = QuietSimulatedResets()
    logging.getLogger(UVICORN_ERROR_LOGGER).addFilter(log_filter)
    return log_filter


def remove_reset_log_filter(log_filter: QuietSimulatedResets) -> None:
    """Detach a filter installed by install_reset_log_filter."""
    logging.getLogger(UVICORN_ERROR_LOGGER).removeFilter(log_filter)
