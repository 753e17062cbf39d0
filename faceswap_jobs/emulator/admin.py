"""The `/_emulator/*` routes: health, ledger, callbacks, reset and live configuration.

Not part of the vendor's API: this is how tests and drills look inside and steer the twin.
Errors here use the vendor's envelope too, so one parser reads every answer of the process.
"""

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .runtime_config import apply_update, config_view
from .state import EmulatorState
from .wire import error_response, new_id

MAX_CONFIG_BODY_BYTES = 256 * 1024
"""Largest accepted `PUT /_emulator/config` body (rules included)."""


def _bad_request(message: str) -> JSONResponse:
    return error_response(400, "bad_request", message, new_id())


class AdminEndpoints:
    """Handlers bound to one emulator's state."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    def routes(self) -> list[Route]:
        """Every admin route."""
        return [
            Route("/_emulator/healthz", self.healthz, methods=["GET"]),
            Route("/_emulator/ledger", self.ledger, methods=["GET"]),
            Route("/_emulator/callbacks", self.callbacks, methods=["GET"]),
            Route("/_emulator/reset", self.reset, methods=["POST"]),
            Route("/_emulator/config", self.get_config, methods=["GET"]),
            Route("/_emulator/config", self.put_config, methods=["PUT"]),
        ]

    def _config_response(self) -> JSONResponse:
        state = self._state
        return JSONResponse(config_view(state.config, state.rules, str(state.store.folder)))

    async def healthz(self, request: Request) -> Response:
        """Liveness, for start-up waits and scripts."""
        return JSONResponse({"ok": True})

    async def ledger(self, request: Request) -> Response:
        """Calls with seq > `since` (default 0), optionally only one `outcome`."""
        since = request.query_params.get("since", "0")
        if not (since.isascii() and since.isdigit()):
            return _bad_request("since must be a non-negative integer")
        outcome = request.query_params.get("outcome")
        entries = self._state.ledger.entries(int(since), outcome)
        return JSONResponse({"count": len(entries), "calls": [e.to_json() for e in entries]})

    async def callbacks(self, request: Request) -> Response:
        """Every callback delivery attempt, including decided losses."""
        deliveries = self._state.callbacks.to_json()
        return JSONResponse({"count": len(deliveries), "deliveries": deliveries})

    async def reset(self, request: Request) -> Response:
        """Forget calls, deliveries, rules and limiter state; keep the configuration."""
        self._state.reset()
        return JSONResponse({"ok": True})

    async def get_config(self, request: Request) -> Response:
        """The running configuration, tokens shown only as hashes."""
        return self._config_response()

    async def put_config(self, request: Request) -> Response:
        """Partial update; all or nothing."""
        body = await request.body()
        if len(body) > MAX_CONFIG_BODY_BYTES:
            return _bad_request(f"config body exceeds {MAX_CONFIG_BODY_BYTES} bytes")
        try:
            update = json.loads(body)
        except (ValueError, RecursionError):
            return _bad_request("config update must be a JSON object")
        try:
            new_config, rules = apply_update(self._state.config, update)
        except ValueError as exc:
            return _bad_request(str(exc))
        self._state.config = new_config
        if rules is not None:
            self._state.rules.replace(rules)
        return self._config_response()
