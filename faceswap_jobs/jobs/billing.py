"""Which calls the vendor bills, and why a job was called again: one pure rule for every reader.

The vendor bills a swap it performed. From our side of the wire a call ends in one of three ways:

- **billed**: the call succeeded (an image came back, directly or by callback);
- **possibly billed**: the request left and no usable answer came back, so the swap may have
  run: an ambiguous error (read timeout, connection reset after sending, the soft time limit, a
  worker that died mid-call, a callback that never came) or a 2xx answer we could not read;
- **not billed**: the API refused it (a 429, a 4xx, a 5xx, a `success: false` answer) or it
  never left (connection refused, DNS, connect timeout).

The worker's ending counts each call once under its class (`jobs.spend`), and the spend report,
the export and the metrics read those counters, so all three agree by construction.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Billing(StrEnum):
    BILLED = "billed"
    POSSIBLY = "possibly_billed"
    NONE = "not_billed"


class RepeatCause(StrEnum):
    """Why a call that did not succeed sends its job to another call."""

    RATE_LIMITED = "rate_limited"
    """A 429: the token was over its rate (not billed)."""
    INTERRUPTED = "interrupted"
    """The worker stopped during the call (possibly billed)."""
    CALLBACK_LOST = "callback_lost"
    """Callback mode: no callback came in time (possibly billed)."""
    AMBIGUOUS = "ambiguous"
    """The connection was cut after sending, or the call ran out of time (possibly billed)."""
    TOKEN = "token"
    """The token was unusable (auth, balance, disabled): the job waits for it (not billed)."""
    SERVER_ERROR = "server_error"
    """A 5xx, an unreadable answer or a connection that never opened."""


SUCCEEDED = "succeeded"
INTERRUPTED = "interrupted"
_AMBIGUOUS_TYPES = frozenset({"AmbiguousCallError"})
_MALFORMED_TYPES = frozenset({"MalformedResponseError"})
_TOKEN_TYPES = frozenset({"AuthenticationError", "QuotaExhaustedError", "ServiceDisabledError"})


def billing_of(outcome: str, error: dict[str, Any] | None) -> Billing:
    """How the vendor bills a call that ended with `outcome` (the attempt's) and `error` (the
    `FaceSwapError.to_dict()` it ended with, or None)."""
    if outcome == SUCCEEDED:
        return Billing.BILLED
    if outcome == INTERRUPTED:
        return Billing.POSSIBLY
    kind = str((error or {}).get("type") or "")
    if kind in _AMBIGUOUS_TYPES:
        return Billing.POSSIBLY
    if kind in _MALFORMED_TYPES and _answered_ok((error or {}).get("status")):
        return Billing.POSSIBLY
    return Billing.NONE


def repeat_cause(outcome: str, error: dict[str, Any] | None) -> RepeatCause:
    """Why a call that did not succeed is followed by another call of its job."""
    data = error or {}
    kind, code = str(data.get("type") or ""), str(data.get("code") or "")
    if outcome == INTERRUPTED or code == "worker_lost":
        return RepeatCause.INTERRUPTED
    if code == "callback_lost":
        return RepeatCause.CALLBACK_LOST
    if kind in _AMBIGUOUS_TYPES:
        return RepeatCause.AMBIGUOUS
    if kind == "RateLimitedError" or data.get("status") == 429:
        return RepeatCause.RATE_LIMITED
    if kind in _TOKEN_TYPES:
        return RepeatCause.TOKEN
    return RepeatCause.SERVER_ERROR


def _answered_ok(status: Any) -> bool:
    """A 2xx, or no status at all (a callback's body): the swap may have run."""
    return status is None or (isinstance(status, int) and 200 <= status < 300)
