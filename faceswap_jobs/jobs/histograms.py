"""Latency histograms kept in Redis, so every worker process adds to one and a scrape reads it.

Why Redis and not prometheus_client's in-process histograms: workers are many processes (threads,
prefork children, hosts) that come and go, and the exporter reads everything at scrape time
(`ops.metrics`). A histogram here is one hash, `{prefix}:hist:{name}`, with a counter per label
set and bucket (`queue=faceswap.bulk,result=ok|le=2.5`), the `+Inf` bucket, and a float sum
(`...|sum`). Buckets are stored per bucket, not cumulatively, so an observation is one HINCRBY,
one HINCRBYFLOAT and a PEXPIRE in one MULTI/EXEC round trip; the reader adds them up. The count
is the sum of the buckets, so a scrape never sees a count that disagrees with them.

The hash expires `ttl_s` after the last observation (like a job record): an idle deployment
leaves nothing behind, and Prometheus reads the reset as a counter restart.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import redis

CALL_SECONDS = "call_seconds"
"""How long one API call took (submit in callback mode, the whole call otherwise)."""
QUEUE_WAIT_SECONDS = "queue_wait_seconds"
"""How long a job that was ready to run waited until a worker started its call."""

CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0, 180.0)
"""The API answers a submit in tens of ms and a synchronous swap in 60-120 s."""
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
"""An interactive job waits well under a second; a bulk backlog can wait hours."""
BUCKETS = {CALL_SECONDS: CALL_BUCKETS, QUEUE_WAIT_SECONDS: WAIT_BUCKETS}

INF = "+Inf"
SUM = "sum"


def bucket_label(bound: float) -> str:
    """A bound as Prometheus writes `le` (`0.05`, `1.0`, `+Inf`)."""
    return INF if math.isinf(bound) else repr(float(bound))


def bucket_for(bounds: tuple[float, ...], seconds: float) -> str:
    """The `le` of the smallest bucket that holds `seconds`."""
    i = bisect.bisect_left(bounds, seconds)
    return bucket_label(bounds[i]) if i < len(bounds) else INF


def series(labels: dict[str, str]) -> str:
    """The field prefix of one label set; label values never contain `,`, `=` or `|` (queue
    names and result classes), and a value that does is replaced so it cannot forge another."""
    return ",".join(
        f"{name}={str(value).replace(',', '_').replace('=', '_').replace('|', '_')}"
        for name, value in sorted(labels.items())
    )


@dataclass
class Histogram:
    """One label set as read: cumulative bucket counts in bound order (ending with `+Inf`)."""

    labels: dict[str, str]
    buckets: list[tuple[str, float]] = field(default_factory=list)
    sum: float = 0.0

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0


class Histograms:
    def __init__(self, client: redis.Redis, prefix: str, *, ttl_s: float) -> None:
        self._r, self._prefix, self._ttl_ms = client, prefix, max(1, int(ttl_s * 1000))

    def key(self, name: str) -> str:
        return f"{self._prefix}:hist:{name}"

    def observe(self, name: str, labels: dict[str, str], seconds: float) -> None:
        seconds = max(0.0, seconds)
        prefix = series(labels)
        key = self.key(name)
        pipe = self._r.pipeline(transaction=True)
        pipe.hincrby(key, f"{prefix}|{bucket_for(BUCKETS[name], seconds)}", 1)
        pipe.hincrbyfloat(key, f"{prefix}|{SUM}", seconds)
        pipe.pexpire(key, self._ttl_ms)
        pipe.execute()

    def read(self, name: str) -> list[Histogram]:
        """Every label set observed so far, with cumulative buckets over all of `name`'s bounds."""
        raw = self._r.hgetall(self.key(name))
        return parse(raw, BUCKETS[name])


def parse(raw: dict[str, str], bounds: tuple[float, ...]) -> list[Histogram]:
    """The hash's fields as histograms; fields of unknown shape are skipped."""
    per_series: dict[str, dict[str, float]] = {}
    for item, value in raw.items():
        prefix, sep, part = item.rpartition("|")
        if not sep:
            continue
        try:
            per_series.setdefault(prefix, {})[part] = float(value)
        except ValueError:
            continue
    labels_order = [bucket_label(b) for b in bounds] + [INF]
    out = []
    for prefix, parts in sorted(per_series.items()):
        labels = dict(pair.split("=", 1) for pair in prefix.split(",") if "=" in pair)
        total, buckets = 0.0, []
        for le in labels_order:
            total += parts.get(le, 0.0)
            buckets.append((le, total))
        out.append(Histogram(labels, buckets, parts.get(SUM, 0.0)))
    return out
