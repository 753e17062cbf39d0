"""Prometheus metrics read from Redis at scrape time.

Why at scrape time and from Redis: every worker (thread, prefork child or host) already writes
its outcomes and limiter state there, so one exporter gives the global picture with no
multiprocess registry and nothing lost when a worker restarts.
"""

from __future__ import annotations

import socketserver
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from faceswap_jobs.config import Settings
from faceswap_jobs.connections import OUTAGE_ERRORS
from faceswap_jobs.errors import ServiceUnavailableError
from faceswap_jobs.jobs.histograms import CALL_SECONDS, QUEUE_WAIT_SECONDS, Histograms
from faceswap_jobs.jobs.parking import ParkingLot
from faceswap_jobs.jobs.spend import billed_counters
from faceswap_jobs.jobs.store import job_store
from faceswap_jobs.jobs.waits import oldest_ready_at
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.roster import Roster

BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}


class RedisStatsCollector(Collector):
    def __init__(
        self, settings: Settings, client: redis.Redis, roster: Roster, parking: ParkingLot
    ) -> None:
        self.settings, self._r, self._roster, self._parking = settings, client, roster, parking
        self._keys = Keys(settings.key_prefix)
        self._histograms = Histograms(client, settings.key_prefix, ttl_s=settings.job_ttl_s)
        self._store = job_store(settings, client)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        stats = self._r.hgetall(self._keys.stats)
        calls = CounterMetricFamily(
            "faceswap_calls", "API calls by outcome (succeeded, retry, defer, pause, ...)",
            labels=["outcome"],
        )  # fmt: skip
        jobs = CounterMetricFamily("faceswap_jobs_finished", "Jobs by end state", labels=["state"])
        lost = CounterMetricFamily(
            "faceswap_callbacks_lost", "Callbacks given up on by the reconciler"
        )
        lost.add_metric([], float(stats.get("callbacks:lost", 0)))
        applied = CounterMetricFamily(
            "faceswap_callbacks_applied", "Callbacks that ended the submission they were issued for"
        )
        applied.add_metric([], float(stats.get("callbacks:applied", 0)))
        refused = CounterMetricFamily(
            "faceswap_callbacks_refused",
            "Callbacks that changed nothing, by why (bad_signature, expired, stale_submission, "
            "task_mismatch, finished, ...): replays, forgeries, late duplicates",
            labels=["why"],
        )
        for field, value in sorted(stats.items()):
            kind, _, name = field.partition(":")
            if kind == "calls":
                calls.add_metric([name], float(value))
            elif kind == "jobs":
                jobs.add_metric([name], float(value))
            elif field.startswith("callbacks:refused:"):
                refused.add_metric([field.removeprefix("callbacks:refused:")], float(value))
        yield calls
        yield jobs
        yield lost
        yield applied
        yield refused
        yield from self._billed_counters()
        yield from self._limit_gauges()
        yield from self._queue_gauges()
        yield from self._budget_gauges()
        yield from self._histogram_families()

    def _billed_counters(self) -> Iterator[CounterMetricFamily]:
        """Calls the vendor billed (`certainty="billed"`: successes) or may have billed
        (`"possibly"`: ambiguous ends), by the token that made them and the job's queue."""
        billed = CounterMetricFamily(
            "faceswap_calls_billed",
            "API calls billed (certainty=billed) or possibly billed (certainty=possibly)",
            labels=["token", "queue", "certainty"],
        )
        for certainty, token, queue, count in billed_counters(self._r, self._keys):
            billed.add_metric([token, queue, certainty], count)
        yield billed

    def _limit_gauges(self) -> Iterator[GaugeMetricFamily]:
        """One series per token of the pool (`token` is its id, a hash)."""
        snaps = self._roster.snapshots()
        for name, doc, value_of in (
            ("faceswap_rate_effective_per_second", "Calls/s the token paces at",
             lambda s: s.pacing_per_s),
            ("faceswap_rate_window_margin_seconds", "Widening of the held window",
             lambda s: s.window_margin_s),
            ("faceswap_rate_ceiling_per_second", "Configured rate ceiling",
             lambda s: s.ceiling_per_s),
            ("faceswap_rate_paused_seconds", "Seconds the token stays paused",
             lambda s: s.paused_for_s),
            ("faceswap_in_flight", "Calls in flight for the token", lambda s: s.in_flight),
            ("faceswap_in_flight_cap", "Cap on calls in flight", lambda s: s.max_in_flight),
            ("faceswap_breaker_state", "0 closed, 1 open, 2 half-open",
             lambda s: BREAKER_STATES.get(s.breaker.state, 1)),
            ("faceswap_token_weight", "The token's share of the work in its pool",
             lambda s: s.weight),
            ("faceswap_token_retired", "1 when an operator took the token out of service",
             lambda s: int(s.retired)),
        ):  # fmt: skip
            gauge = GaugeMetricFamily(name, doc, labels=["token"])
            for snap in snaps:
                gauge.add_metric([snap.token_id], float(value_of(snap)))
            yield gauge

    def _budget_gauges(self) -> Iterator[GaugeMetricFamily]:
        """Today's budget, every capped scope and every queue (`budget show`): an alert on
        spent / cap sees the soft threshold the workers announce."""
        spent = GaugeMetricFamily(
            "faceswap_budget_spent_calls", "Calls charged to a budget scope", labels=["scope"]
        )
        cap = GaugeMetricFamily(
            "faceswap_budget_cap_calls", "A budget scope's cap (none: unlimited)", labels=["scope"]
        )
        waiting = GaugeMetricFamily(
            "faceswap_budget_waiting_jobs", "Jobs paused until a scope has room", labels=["scope"]
        )
        queues = (self.settings.interactive_queue, self.settings.bulk_queue)
        for usage in self._roster.budget.usage([f"queue:{name}" for name in queues]):
            spent.add_metric([usage.scope], usage.spent)
            waiting.add_metric([usage.scope], usage.waiting)
            if usage.cap is not None:
                cap.add_metric([usage.scope], usage.cap)
        yield from (spent, cap, waiting)

    def _queue_gauges(self) -> Iterator[GaugeMetricFamily]:
        parked, paused = self._parking.counts()
        waiting = GaugeMetricFamily(
            "faceswap_jobs_waiting", "Jobs parked or paused", labels=["why"]
        )
        waiting.add_metric(["parked"], parked)
        waiting.add_metric(["paused"], paused)
        yield waiting
        queued = GaugeMetricFamily("faceswap_queue_length", "Messages in a queue", labels=["queue"])
        for name in (self.settings.interactive_queue, self.settings.bulk_queue):
            queued.add_metric([name], self._r.llen(name))
        yield queued
        dlq = GaugeMetricFamily("faceswap_dead_letters", "Jobs in the dead-letter queue")
        dlq.add_metric([], self._r.zcard(self._keys.dead_letters))
        yield dlq
        oldest = GaugeMetricFamily(
            "faceswap_oldest_message_age_seconds",
            "How long the next message of a queue has waited (absent when the queue is empty or "
            "its job's ready time is unknown: a bulk row not yet taken)",
            labels=["queue"],
        )
        now = time.time()
        for name in (self.settings.interactive_queue, self.settings.bulk_queue):
            ready = oldest_ready_at(self._r, self._store, name)
            if ready is not None:
                oldest.add_metric([name], max(0.0, now - ready))
        yield oldest

    def _histogram_families(self) -> Iterator[HistogramMetricFamily]:
        for name, metric, doc, labels in (
            (CALL_SECONDS, "faceswap_call_duration_seconds",
             "API calls by queue and result (ok, 429, 4xx, 5xx, no_answer, error)",
             ["queue", "result"]),
            (QUEUE_WAIT_SECONDS, "faceswap_queue_wait_seconds",
             "From a job being ready (message sent, retry countdown over) to its call starting",
             ["queue"]),
        ):  # fmt: skip
            family = HistogramMetricFamily(metric, doc, labels=labels)
            for hist in self._histograms.read(name):
                family.add_metric(
                    [hist.labels.get(label, "") for label in labels], hist.buckets, hist.sum
                )
            yield family


REDIS_DOWN = b"""# HELP faceswap_redis_up 1 when Redis answered this scrape, else 0
# TYPE faceswap_redis_up gauge
faceswap_redis_up 0
"""
REDIS_UP = REDIS_DOWN.replace(b"faceswap_redis_up 0", b"faceswap_redis_up 1")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def redis_answers(client: redis.Redis) -> Callable[[], bool]:
    """The readiness check: Redis answers a PING (within the client's retry budget)."""

    def ready() -> bool:
        try:
            return bool(client.ping())
        except (*OUTAGE_ERRORS, redis.RedisError):
            return False

    return ready


def metrics_app(
    registry: CollectorRegistry, ready: Callable[[], bool]
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """`/metrics` from `registry`: 503 with `faceswap_redis_up 0` while Redis is unreachable
    (so the scrape fails loudly and an alert can say why); `/healthz` 200 while the process
    serves (liveness); `/readyz` 200 when `ready()` (Redis answers), else 503 (readiness);
    404 on any other path."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/healthz":
            return _text(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            if ready():
                return _text(start_response, "200 OK", b"ready\n")
            return _text(start_response, "503 Service Unavailable", b"redis unreachable\n")
        if path != "/metrics":
            return _text(start_response, "404 Not Found",
                         b"not found: /metrics, /healthz and /readyz are served\n")  # fmt: skip
        try:
            body, status = generate_latest(registry) + REDIS_UP, "200 OK"
        except (*OUTAGE_ERRORS, ServiceUnavailableError):
            body, status = REDIS_DOWN, "503 Service Unavailable"
        start_response(status, [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


def _text(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def serve_metrics(
    registry: CollectorRegistry, ready: Callable[[], bool], address: str, port: int
) -> WSGIServer:
    return make_server(address, port, metrics_app(registry, ready), _ThreadingServer, _QuietHandler)
