"""`POST /face/swap`: the call flow, step by step as the vendor's contract describes it.

Order: ledger entry, auth, body, rate limit, scripted rules, random faults, then either the
callback-mode acknowledgement or the synchronous swap. Every refusal is a VendorError turned
into the envelope in one place; anything unexpected is logged and answered as a vendor 500,
so no input can kill or hang the server.
"""

import asyncio
import logging
import math

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import bearer_token, check_token, token_hash
from .callbacks import CallbackPolicy, deliver_callback
from .fault_responses import ResetResponse, malformed_response
from .faults import Fault, draw_fault
from .ledger import LedgerEntry
from .payload import SwapRequest, ledger_view, parse_swap_request, read_body
from .processing import run_swap
from .state import EmulatorState
from .wire import (
    VendorError,
    callback_failure_body,
    callback_success_body,
    error_response,
    new_id,
    success_body,
    vendor_error_response,
)

logger = logging.getLogger(__name__)


class SwapEndpoint:
    """The handler of `POST /face/swap`, bound to one emulator's state."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def handle(self, request: Request) -> Response:
        """Answer one call; never raises."""
        state = self._state
        token = bearer_token(request.headers.get("authorization"))
        entry = state.ledger.open(token_hash(token) if token is not None else None)
        trace_id = new_id()
        try:
            return await self._answer(request, token, entry, trace_id)
        except VendorError as error:
            state.ledger.settle(entry, error.outcome, error.status, trace_id=trace_id)
            return vendor_error_response(error, trace_id)
        except asyncio.CancelledError:
            # Only uvicorn's shutdown cancels a handler (a hang or a slow swap still running):
            # end the call as the vendor would, instead of a plain-text 500 and a traceback.
            state.ledger.settle(entry, "internal_error", 500, trace_id=trace_id)
            return error_response(500, "api_error", "server shutting down", trace_id)
        except Exception:
            logger.exception("unexpected error in POST /face/swap")
            state.ledger.settle(entry, "internal_error", 500, trace_id=trace_id)
            return error_response(500, "api_error", "internal error", trace_id)

    async def _answer(
        self, request: Request, token: str | None, entry: LedgerEntry, trace_id: str
    ) -> Response:
        state = self._state
        config = state.config
        raw = await read_body(request)
        entry.request = ledger_view(raw)
        accepted_token = check_token(token, config)
        swap_request = parse_swap_request(raw)
        rate_per_s = config.rate_for(accepted_token)
        if rate_per_s is not None:
            self._check_rate(
                token_hash(accepted_token),
                config.rate_window,
                rate_per_s,
                config.burst_for(rate_per_s),
            )
        fault = state.rules.match(swap_request.source_image_url) or draw_fault(
            state.rng, config.faults, config.retry_after_s, config.time_scale
        )
        if fault is not None:
            return await self._carry_out(fault, entry, trace_id)
        task_id = new_id()
        public_base_url = config.public_url or str(request.base_url).rstrip("/")
        if swap_request.callback_url is not None:
            state.background.spawn(
                self._swap_and_call_back(
                    swap_request, swap_request.callback_url, task_id, public_base_url
                ),
                name=f"callback-{task_id}",
            )
            state.ledger.settle(entry, "accepted", 200, task_id=task_id)
            return JSONResponse({"task_id": task_id})
        result = await run_swap(state, swap_request, task_id, public_base_url)
        state.ledger.settle(entry, "success", 200, task_id=task_id)
        return JSONResponse(
            success_body(
                result.task_id,
                result.image_url,
                result.width_px,
                result.height_px,
                result.size_bytes,
            )
        )

    def _check_rate(self, key: str, rate_window: str, rate_per_s: float, burst: float) -> None:
        """Bucket or sliding window alike: a refusal is the same 429 and ledger outcome."""
        wait_s = self._state.limiter.acquire(key, rate_window, rate_per_s, burst)
        if wait_s > 0:
            raise VendorError(
                429,
                "too_many_requests",
                "too many requests",
                "rate_limited",
                retry_after_s=max(1, math.ceil(wait_s)),
            )

    async def _carry_out(self, fault: Fault, entry: LedgerEntry, trace_id: str) -> Response:
        """Answer as the fault says; the ledger records its outcome (or `rule`)."""
        state = self._state
        ledger = state.ledger
        if fault.kind == "reset":
            ledger.settle(entry, fault.outcome, None)
            return ResetResponse()
        if fault.kind == "malformed":
            serial = state.malformed_served
            state.malformed_served += 1
            ledger.settle(entry, fault.outcome, 200)
            return malformed_response(serial, new_id())
        if fault.kind == "hang":
            ledger.mark(entry, fault.outcome)
            await asyncio.sleep(state.config.hang_s)
        ledger.settle(entry, fault.outcome, fault.status, trace_id=trace_id)
        return error_response(
            fault.status, fault.code, fault.message, trace_id, fault.retry_after_s
        )

    async def _swap_and_call_back(
        self, swap_request: SwapRequest, callback_url: str, task_id: str, public_base_url: str
    ) -> None:
        """Callback mode, after the immediate answer: process, then POST the outcome."""
        state = self._state
        try:
            result = await run_swap(state, swap_request, task_id, public_base_url)
            payload = callback_success_body(
                task_id, result.image_url, result.width_px, result.height_px, result.size_bytes
            )
        except VendorError as error:
            payload = callback_failure_body(task_id, error.code, error.message, new_id())
        except Exception:
            logger.exception("unexpected error processing callback task %s", task_id)
            payload = callback_failure_body(task_id, "api_error", "internal error", new_id())
        config = state.config
        policy = CallbackPolicy(
            delay_s=config.callback_delay_s * config.time_scale,
            jitter_s=config.callback_jitter_s * config.time_scale,
            loss=config.callback_loss,
            duplicate=config.callback_duplicate,
        )
        await deliver_callback(
            state.http, state.callbacks, state.rng, policy, callback_url, payload
        )
