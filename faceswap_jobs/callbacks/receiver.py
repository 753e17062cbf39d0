"""The webhook receiver: where the API POSTs callback-mode results (`faceswap-jobs webhook`).

It answers fast and does little: check the URL's signature (one submission of one job, not
expired) before reading the body, bound and parse the body, then let `Settlement` apply it in one
atomic step that also checks the submission is the one still waiting and the body's task id the
one recorded. A success — nearly every callback — is one script call on an asyncio Redis client,
with no thread hop; a failure goes through the retry policy on a thread. Telling Celery's backend
and Flower happens afterwards, in batches (`callbacks/announce.py`). A client's mistake gets a
4xx with a reason, never a 500; a callback for an unknown or finished job, or for a submission no
longer waiting, gets a 200 that changes nothing (counted), so the sender stops retrying.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from faceswap_jobs.callbacks.refusals import RefusalTally
from faceswap_jobs.callbacks.settlement import build_settlement, usable_result
from faceswap_jobs.callbacks.signing import Refused, verify
from faceswap_jobs.celery_app import create_app
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import OUTAGE_ERRORS, async_redis_client, redis_client
from faceswap_jobs.jobs.lua import END_ATTEMPT
from faceswap_jobs.keys import Keys

log = logging.getLogger(__name__)

HEALTH_PROBE_RETRY_S = 1.0


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is larger than `limit` (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_webhook_app(settings: Settings) -> Starlette:
    if settings.webhook_secret is None:
        raise ValueError("the webhook receiver needs FACESWAP_WEBHOOK_SECRET")
    secret = settings.webhook_secret.get_secret_value()
    client = redis_client(settings)
    probe = redis_client(settings, retry_s=HEALTH_PROBE_RETRY_S)
    settle = build_settlement(settings, client, create_app(settings))
    async_client = async_redis_client(settings)
    settle_script = async_client.register_script(END_ATTEMPT)
    refusals = RefusalTally(async_client, Keys(settings.key_prefix).stats)

    async def receive(request: Request) -> JSONResponse:
        try:
            job_id = request.path_params["job_id"]
            ticket = verify(secret, job_id, request.query_params, time.time())
        except Refused as refused:
            refusals.count(refused.reason)
            return _refuse(refused.status, refused.message)
        body = await _read_bounded(request, settings.webhook_max_body_bytes)
        if body is None:
            refusals.count("too_large")
            return _refuse(413, f"body larger than {settings.webhook_max_body_bytes} bytes")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            refusals.count("invalid_body")
            return _refuse(400, "body is not JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("success"), bool):
            refusals.count("invalid_body")
            return _refuse(400, "body must be a JSON object with a boolean 'success'")
        result = usable_result(payload)
        try:
            if result is None:
                settled = await run_in_threadpool(
                    settle.on_callback, job_id, ticket.submission, payload
                )
            else:
                keys, args = settle.success_call(job_id, ticket.submission, result)
                reply = await settle_script(keys=keys, args=args)
                settled = settle.succeeded(job_id, result, reply)
        except redis.RedisError as exc:
            log.warning("callback for job %s not stored, Redis unavailable: %s", job_id, exc)
            return _refuse(503, "storage unavailable, send again later")
        return JSONResponse({"ok": True, "outcome": settled.outcome})

    async def healthz(_: Request) -> JSONResponse:
        """200 while the process serves: during a Redis outage a callback is still taken and
        held (retried for `FACESWAP_REDIS_RETRY_S`), so the receiver stays in rotation; the
        `redis` field says whether Redis answered a ping within a second."""
        try:
            redis_up = bool(await run_in_threadpool(probe.ping))
        except OUTAGE_ERRORS:
            redis_up = False
        return JSONResponse({"ok": True, "redis": redis_up})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        refusals.start()
        yield
        await refusals.stop()
        settle.close()
        client.close()
        probe.close()
        await async_client.aclose()

    return Starlette(
        routes=[
            Route("/callbacks/{job_id}", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
