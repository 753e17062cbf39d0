"""The Starlette app: routes, error envelopes for every stray request, and the lifespan.

The lifespan opens the one shared HTTP client and the result folder, and on shutdown cancels
background work, so constructing the app has no side effects.
"""

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .admin import AdminEndpoints
from .config import EmulatorConfig
from .fault_responses import SimulatedReset, install_reset_log_filter, remove_reset_log_filter
from .outbound import OutboundHttp
from .samples import load_sample, sample_names
from .state import EmulatorState
from .storage import ResultStore
from .swap import SwapEndpoint
from .wire import error_response, new_id

logger = logging.getLogger(__name__)

_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}


class FileEndpoints:
    """Result PNGs (`/files/...`) and the bundled samples (`/samples/...`)."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._samples: dict[str, bytes] = {}

    def load_samples(self) -> None:
        """Read the samples into memory once: they are served for every sample-URL fetch."""
        self._samples = {name: load_sample(name) for name in sample_names()}

    def routes(self) -> list[Route]:
        """The file routes."""
        return [
            Route("/files/{name}", self.result_file, methods=["GET"]),
            Route("/samples", self.sample_list, methods=["GET"]),
            Route("/samples/{name}", self.sample_file, methods=["GET"]),
        ]

    async def result_file(self, request: Request) -> Response:
        """A stored result by `{task_id}.png`."""
        path = self._state.store.path_of(request.path_params["name"])
        if path is None:
            return error_response(404, "not_found", "no such file", new_id())
        return FileResponse(path, media_type="image/png")

    async def sample_list(self, request: Request) -> Response:
        """The sample names, to build image URLs from."""
        return JSONResponse({"samples": sorted(self._samples)})

    async def sample_file(self, request: Request) -> Response:
        """One sample PNG."""
        data = self._samples.get(request.path_params["name"])
        if data is None:
            return error_response(404, "not_found", "no such sample", new_id())
        return Response(data, media_type="image/png")


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Routing errors (404, 405) in the vendor's envelope rather than Starlette's plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = _HTTP_ERROR_CODES.get(status, "bad_request" if status < 500 else "api_error")
    headers = getattr(exc, "headers", None)
    response = error_response(status, code, str(getattr(exc, "detail", code)), new_id())
    if headers:
        response.headers.update(headers)
    return response


async def _unexpected_exception(request: Request, exc: Exception) -> Response:
    """Last resort: still the envelope. A simulated reset lands here too and is not a bug."""
    if not isinstance(exc, SimulatedReset):
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "api_error", "internal error", new_id())


def create_app(config: EmulatorConfig) -> Starlette:
    """The emulator as an ASGI app (run it with uvicorn, lifespan on)."""
    state = EmulatorState.from_config(config)
    files = FileEndpoints(state)
    swap = SwapEndpoint(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = ResultStore(config.storage_dir)
        log_filter = install_reset_log_filter()
        files.load_samples()
        outbound = OutboundHttp()
        state.open(outbound, store)
        try:
            yield
        finally:
            await state.background.shutdown()
            await outbound.aclose()
            remove_reset_log_filter(log_filter)
            store.close()

    routes = [
        Route("/face/swap", swap.handle, methods=["POST"]),
        *files.routes(),
        *AdminEndpoints(state).routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected_exception},
    )
    app.state.emulator = state
    return app
