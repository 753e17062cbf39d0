"""The per-job token in a callback URL: an HMAC of the job id, checked in constant time.

The vendor signs nothing, so the URL itself must be unguessable: only who knows the webhook
secret can name a job in a way the receiver accepts, and no token works for another job.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

SIGNATURE_PARAM = "sig"


def sign(secret: str, job_id: str) -> str:
    return hmac.new(secret.encode(), job_id.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, job_id: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, job_id), signature)


def callback_url(base_url: str, secret: str, job_id: str) -> str:
    """Where the API should POST this job's result."""
    signature = sign(secret, job_id)
    return (
        f"{base_url.rstrip('/')}/callbacks/{quote(job_id, safe='')}?{SIGNATURE_PARAM}={signature}"
    )
