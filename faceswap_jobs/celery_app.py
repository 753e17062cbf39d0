"""`create_app(settings)`: the Celery app, configured for minute-long, paid, idempotent calls.

Only builds the app; tasks live in `tasks`, and nothing here connects to anything until used.
"""

from __future__ import annotations

import ssl
import weakref
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from celery import Celery
from kombu import Exchange, Queue

from faceswap_jobs import kombu_fix
from faceswap_jobs.config import Settings

SWAP_TASK = "faceswap.swap"
"""Producers send by name, so they need neither the worker's code nor its secrets."""

PUBLISH_PAUSE_S = 1.0

CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")

_settings_by_app: weakref.WeakKeyDictionary[Celery, Settings] = weakref.WeakKeyDictionary()


def create_app(settings: Settings) -> Celery:
    kombu_fix.apply()
    app = Celery("faceswap_jobs", broker=settings.redis_url, backend=settings.redis_url)
    tls = tls_options(settings.redis_url)
    exchange = Exchange("faceswap", type="direct")
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[
            Queue(settings.interactive_queue, exchange, routing_key=settings.interactive_queue),
            Queue(settings.bulk_queue, exchange, routing_key=settings.bulk_queue),
        ],
        task_default_queue=settings.interactive_queue,
        task_default_exchange="faceswap",
        task_default_routing_key=settings.interactive_queue,
        task_create_missing_queues=False,
        # A job is acknowledged only once it is finished, and comes back if its worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        # Each call takes minutes: a worker must not hoard messages another could run.
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.soft_time_limit_s,
        task_time_limit=settings.time_limit_s,
        # Interactive first: a worker asks Redis for its queues in the order it was given them
        # (`--queues interactive,bulk`), so a bulk backlog never delays an application's job.
        # A dead worker's messages are put back by `worker.stranded` (within 5 s of the
        # visibility timeout, or sooner); kombu's own sweep (every ~100 s) stays as the
        # fallback for workers without it.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "queue_order_strategy": "priority",
            "retry_on_timeout": True,
        },
        result_backend_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "retry_policy": publish_retry_policy(settings.redis_retry_s),
        },
        broker_connection_retry_on_startup=True,
        broker_use_ssl=tls,
        redis_backend_use_ssl=tls,
        # Sending (a producer's message, a worker's retry) rides through a Redis restart as
        # long as every other Redis command does.
        task_publish_retry_policy=publish_retry_policy(settings.redis_retry_s),
        # Flower shows queued, started and retried tasks.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        result_extended=True,
        result_expires=int(settings.result_ttl_s),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    _settings_by_app[app] = settings
    return app


def tls_options(redis_url: str) -> dict[str, Any] | None:
    """The TLS options of a `rediss://` URL, for the broker, the result backend and Flower.

    redis-py reads them from the URL and verifies the server by default. Without them kombu
    would accept any certificate on a bare `rediss://`, Celery's backend refuses to start, and
    Flower reads them only from `broker_use_ssl`; so all three get the URL's options, with the
    certificate checked unless the URL says `ssl_cert_reqs=none`.
    """
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss":
        return None
    query = dict(parse_qsl(parts.query))
    cert_reqs = query.get("ssl_cert_reqs", "required")
    if cert_reqs not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
    options: dict[str, Any] = {key: query[key] for key in TLS_FILES if key in query}
    options["ssl_cert_reqs"] = CERT_REQS[cert_reqs]
    return options


def publish_retry_policy(budget_s: float) -> dict[str, float]:
    """Kombu's retry of a failed publish, paced like our Redis clients and as long."""
    return {
        "max_retries": int(budget_s / PUBLISH_PAUSE_S) + 1,
        "interval_start": 0.0,
        "interval_step": 0.2,
        "interval_max": PUBLISH_PAUSE_S,
    }


def send_swap(app: Celery, job_id: str, request: dict[str, Any], queue: str) -> None:
    """Send a job's message: by task name (no worker code needed), task id = job id."""
    app.send_task(SWAP_TASK, args=[job_id, request], task_id=job_id, queue=queue,
                  routing_key=queue)  # fmt: skip


def settings_of(app: Celery) -> Settings:
    """The settings an app was built from (kept off `app.conf`, which workers will print)."""
    return _settings_by_app[app]
