"""How the receiver is served: uvicorn with header and body deadlines, a connection cap, quiet logs.

uvicorn alone holds a connection for as long as its client likes while the request head or body
trickles in (its keep-alive timer only runs between requests, and any byte cancels it), accepts
every connection it is offered, logs a 40-line traceback for each client that leaves mid-body, and
a warning per garbage request. So the HTTP protocol here is uvicorn's httptools protocol plus:

- a **head deadline**: from the connection's first moment (or a keep-alive request's first byte)
  the whole request head must arrive within `webhook_header_timeout_s`, else the connection closes;
- a **body deadline**: the whole body must arrive within `webhook_body_timeout_s` of its head, else
  a 408 (if nothing was answered yet) and the connection closes, whatever the endpoint did with it;
- a **connection cap**: beyond `webhook_max_connections` open connections, the one that has waited
  longest on its client (a head or body still arriving, or an idle keep-alive) is closed to make
  room, so a flood of slow clients cannot crowd out a callback, whose head and body arrive at
  once; only when every connection holds a whole request being answered is the newcomer refused.
  The process's open-file limit is raised to fit the cap, or the cap lowered to fit it.

A client that leaves mid-request is a debug line, and uvicorn's per-request warnings (garbage
requests, unsupported upgrades) are rate-limited to one line per kind per minute with a count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from faceswap_jobs.callbacks.receiver import create_webhook_app
from faceswap_jobs.config import Settings

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 30
"""An idle keep-alive connection is closed after this many seconds."""
SPARE_FILES = 64
"""Open files a receiver process needs besides its client connections (Redis pools, logs, libs)."""
WARNING_INTERVAL_S = 60.0
"""A warning is logged at most once per this many seconds, with how many were dropped since."""
TIMEOUT_BODY = b'{"ok": false, "error": "request body too slow"}'
TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(TIMEOUT_BODY), TIMEOUT_BODY)
)


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingLimits:
        return cls(
            settings.webhook_header_timeout_s,
            settings.webhook_body_timeout_s,
            settings.webhook_max_connections,
        )


@functools.cache
def process_limits() -> ServingLimits:
    """This process's limits, read once from `FACESWAP_*`: uvicorn gives each connection's
    protocol only its own config, and builds the protocol again in every worker process. The
    open-file limit is raised here, per process, to fit the connection cap."""
    limits = ServingLimits.from_settings(Settings())
    fitted = fit_open_files(limits.max_connections)
    return dataclasses.replace(limits, max_connections=fitted)


class DeadlineProtocol(HttpToolsProtocol):
    """httptools' HTTP/1.1 protocol with a head deadline, a body deadline and a connection cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = process_limits()
        self.deadline: asyncio.TimerHandle | None = None
        self.waiting_since = time.monotonic()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._make_room():
            log.warning(
                "connection refused: all %d connections are running a request",
                self.limits.max_connections,
            )
            self.transport.close()
            return
        self._arm(self.limits.header_timeout_s, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.deadline is None:
            self._arm(self.limits.header_timeout_s, "head")

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_timeout_s, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.waiting_since = time.monotonic()
        super().on_response_complete()

    def waiting(self) -> bool:
        """The connection waits on its client: for a head, the rest of a body, or a next request."""
        cycle = self.cycle
        return not self.transport.is_closing() and (
            cycle is None or cycle.response_complete or cycle.more_body
        )

    def _make_room(self) -> bool:
        """True when this connection fits under the cap, closing the longest-waiting one."""
        if len(self.connections) <= self.limits.max_connections:
            return True
        others = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(others) < self.limits.max_connections:
            return True
        waiting = [c for c in others if isinstance(c, DeadlineProtocol) and c.waiting()]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since)
        log.debug("closed the longest-waiting connection to make room (%d open)", len(others))
        oldest.transport.close()
        return True

    def _arm(self, delay_s: float, phase: str) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(delay_s, self._expired, phase)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self, phase: str) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        log.debug("closed a connection whose request %s was too slow", phase)
        cycle = self.cycle
        if phase == "body" and cycle is not None and not cycle.response_started:
            self.transport.write(TIMEOUT_408)
            cycle.disconnected = True  # what the application sends from now on is dropped
        self.transport.close()


class QuietDisconnects:
    """ASGI wrapper: a client that left mid-request is a debug line, not a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.debug("client left during %s %r", scope.get("method"), scope.get("path"))


class RateLimitedWarnings(logging.Filter):
    """Lets each distinct warning through once per `interval_s`, saying how many were dropped.

    uvicorn warns once per bad request ("Invalid HTTP request received.", an unsupported upgrade,
    the concurrency limit), so one client could fill the log; errors always pass."""

    def __init__(
        self, interval_s: float = WARNING_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s, self.clock = interval_s, clock
        self.last: dict[str, float] = {}
        self.dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key, now = str(record.msg), self.clock()
        if key in self.last and now - self.last[key] < self.interval_s:
            self.dropped[key] = self.dropped.get(key, 0) + 1
            return False
        self.last[key] = now
        dropped = self.dropped.pop(key, 0)
        if dropped:
            record.msg = f"{key} ({dropped} more like it not logged)"
        return True


def install_log_filters() -> None:
    """Rate-limit warnings in this process, once: uvicorn's per-request ones and ours."""
    for name in ("uvicorn.error", __name__):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitedWarnings) for f in logger.filters):
            logger.addFilter(RateLimitedWarnings())


def app_from_settings() -> ASGIApp:
    """Factory for uvicorn's worker processes: each builds its own app from `FACESWAP_*`."""
    install_log_filters()
    return QuietDisconnects(create_webhook_app(Settings()))


def open_files_plan(soft: int, hard: int, max_connections: int) -> tuple[int, int]:
    """The soft open-file limit to set and the connection cap that fits under it."""
    needed = max_connections + SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft, max_connections
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    return raised, min(max_connections, max(1, raised - SPARE_FILES))


def fit_open_files(max_connections: int) -> int:
    """Raise this process's soft open-file limit to fit `max_connections`; the cap that fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, cap = open_files_plan(soft, hard, max_connections)
    if new_soft != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    if cap < max_connections:
        log.warning("open-file limit %d: at most %d connections", new_soft, cap)
    return cap


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run the receiver in `workers` processes until a signal stops it."""
    uvicorn.run(
        "faceswap_jobs.callbacks.serving:app_from_settings",
        factory=True,
        http=DeadlineProtocol,
        ws="none",
        workers=workers,
        host=host,
        port=port,
        backlog=4096,
        access_log=False,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=2 * settings.webhook_max_connections,
    )
