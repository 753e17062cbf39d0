"""The callback URL of one submission: an HMAC of job id, submission nonce and expiry.

The vendor signs nothing, so the URL itself must be unguessable, and since whoever sees it (the
vendor, a proxy's log) can post to it, it must be worth as little as possible: it names one
submission of one job, not the job. The receiver applies a callback only to the submission still
waiting (`jobs.lua` checks the nonce against the job's last attempt), so a leaked URL is dead as
soon as its submission ends, and worthless after its expiry whatever happens to the job.

Everything in the query is untrusted: a value that is not exactly what `callback_url` writes is
a bad signature (403), never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

SIGNATURE_PARAM = "sig"
SUBMISSION_PARAM = "sub"
EXPIRY_PARAM = "exp"

MAX_JOB_ID_CHARS = 128
URL_GRACE_S = 3600.0
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_SUBMISSION = re.compile(r"[A-Za-z0-9_-]{16,64}")
_EXPIRY = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Ticket:
    """What a verified callback URL names: one submission of one job."""

    job_id: str
    submission: str
    expires_at: int


class Refused(Exception):
    """A callback URL the receiver must not act on; `reason` is a metric label."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def new_submission() -> str:
    """A fresh nonce for one call in callback mode (96 random bits)."""
    return secrets.token_urlsafe(12)


def ticket_for(job_id: str, submission: str, wait_s: float, now: float) -> Ticket:
    """A submission's URL expires `URL_GRACE_S` after the reconciler gives up on its callback:
    by then the submission was retried or failed, and the grace only covers a reconciler that
    was not running at the time."""
    return Ticket(job_id, submission, int(now + wait_s + URL_GRACE_S) + 1)


def sign(secret: str, ticket: Ticket) -> str:
    """Length-prefixed fields, so no job id or nonce can be shifted into the next field."""
    fields = (ticket.job_id, ticket.submission, str(ticket.expires_at))
    message = b"".join(len(f.encode()).to_bytes(4, "big") + f.encode() for f in fields)
    return hmac.new(secret.encode(), b"faceswap-callback-v2" + message, hashlib.sha256).hexdigest()


def callback_url(base_url: str, secret: str, ticket: Ticket) -> str:
    """Where the API should POST the result of this submission."""
    query = urlencode(
        {
            SUBMISSION_PARAM: ticket.submission,
            EXPIRY_PARAM: ticket.expires_at,
            SIGNATURE_PARAM: sign(secret, ticket),
        }
    )
    return f"{base_url.rstrip('/')}/callbacks/{quote(ticket.job_id, safe='')}?{query}"


def verify(secret: str, job_id: str, query: Mapping[str, str], now: float) -> Ticket:
    """The submission a callback URL names, or `Refused` (401 unsigned, 403 forged or expired)."""
    signature = query.get(SIGNATURE_PARAM)
    if not signature:
        raise Refused(401, "unsigned", "missing signature")
    submission, expiry = query.get(SUBMISSION_PARAM, ""), query.get(EXPIRY_PARAM, "")
    if not (
        _SIGNATURE.fullmatch(signature)
        and _SUBMISSION.fullmatch(submission)
        and _EXPIRY.fullmatch(expiry)
        and 0 < len(job_id) <= MAX_JOB_ID_CHARS
        and job_id.isprintable()
    ):
        raise Refused(403, "bad_signature", "bad signature")
    ticket = Ticket(job_id, submission, int(expiry))
    if not hmac.compare_digest(sign(secret, ticket).encode(), signature.encode()):
        raise Refused(403, "bad_signature", "bad signature")
    if ticket.expires_at < now:
        raise Refused(403, "expired", "callback URL expired")
    return ticket
