"""What a swap request, its result and a job's record look like, and how a request is validated.

A `SwapRequest` can only be built valid (its fields are checked by `validation`), so a bad row
costs neither a Redis message nor an API call, and the caller gets one clear `InvalidSwapRequest`.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from faceswap_jobs.errors import FaceSwapError, InvalidSwapRequest, error_from_dict

MAX_URL_LENGTH = 2048
"""Characters; longer URLs are refused by most CDNs and would bloat every queued message."""
MIN_API_TIMEOUT_S = 1.0
MAX_API_TIMEOUT_S = 600.0


_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Controls (C0, DEL, C1), format characters (bidi overrides, zero-width), lone surrogates,
private-use and unassigned code points, line separators: nothing a real URL or id contains, and
all of them can disguise what is shown (or, a lone surrogate, cannot be written as UTF-8)."""
_BLANK_LOOKALIKES = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
)
"""Default-ignorable characters Unicode files under letters or marks (Hangul fillers, variation
selectors): printable by Python's rules, yet drawn as nothing."""
_FORBIDDEN_IN_HOST = frozenset('<>^|%"\\`{}')
"""Characters no host name contains (percent-escapes included): a host is a name or an IP."""


def hidden_character(text: str) -> str | None:
    """The first character of `text` that a person would not see as written (a control, an
    invisible or format character, a lone surrogate, a blank look-alike) as `U+XXXX at N`, or
    None when there is none."""
    for position, ch in enumerate(text, start=1):
        if ch in _BLANK_LOOKALIKES or unicodedata.category(ch) in _HIDDEN_CATEGORIES:
            return f"U+{ord(ch):04X} at character {position}"
    return None


def check_url(value: Any, field: str) -> str:
    """A URL we may send to the API, store and show: `http(s)`, a host, no credentials, at most
    `MAX_URL_LENGTH` characters, nothing hidden; otherwise `InvalidSwapRequest` naming `field`."""
    if not isinstance(value, str):
        raise InvalidSwapRequest(f"{field} must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidSwapRequest(f"{field} is longer than {MAX_URL_LENGTH} characters")
    if hidden := hidden_character(value):
        raise InvalidSwapRequest(
            f"{field} must not contain control, invisible or unpaired surrogate characters "
            f"({hidden})"
        )
    if any(ch.isspace() for ch in value):
        raise InvalidSwapRequest(f"{field} must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        credentials = parts.username is not None or parts.password is not None
        parts.port  # noqa: B018 -- raises ValueError for a port outside 0-65535
    except ValueError as exc:
        raise InvalidSwapRequest(f"{field} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidSwapRequest(f"{field} must be an http:// or https:// URL with a host")
    if credentials:
        raise InvalidSwapRequest(f"{field} must not carry credentials (user:password@)")
    if any(ch in _FORBIDDEN_IN_HOST for ch in host):
        raise InvalidSwapRequest(f"{field} has a host name with characters no host contains")
    return value


class SwapRequest(BaseModel):
    """The body we send to `POST /face/swap` (without `callback_url`, which the worker adds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_image_url: str
    target_image_url: str
    timeout: float | None = Field(default=None, ge=MIN_API_TIMEOUT_S, le=MAX_API_TIMEOUT_S)

    @field_validator("source_image_url", "target_image_url", mode="before")
    @classmethod
    def _url(cls, value: Any, info: Any) -> str:
        return check_url(value, info.field_name)

    @field_validator("timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        """A number of seconds, not `true` (which pydantic would read as 1.0) nor text: a message
        or record holds what `validation.parse_timeout` made of the caller's input."""
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("must be a number of seconds")
        return value

    @classmethod
    def parse(cls, data: dict[str, Any]) -> SwapRequest:
        """Validate untrusted input, turning pydantic's report into one readable error."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'request'}: "
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()
            )
            raise InvalidSwapRequest(f"invalid swap request: {problems}") from None

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


MAX_TASK_ID_CHARS = 256


class SwapResult(BaseModel):
    """The documented success body."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    image_url: str
    image_width: int | None = None
    image_height: int | None = None
    image_size: int | None = None
    task_id: str | None = Field(default=None, max_length=MAX_TASK_ID_CHARS)

    @field_validator("image_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An answer's URL is shown, exported and fetched: `javascript:`, `file:` or a 900-KB
        string from the API (or a forged callback) is a malformed answer, not a result."""
        return check_url(value, "image_url")


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    WAITING_CALLBACK = "waiting_callback"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Attempt(BaseModel):
    """One call to the API (or one interrupted try), as kept in the job's history."""

    number: int
    started_at: float
    ended_at: float | None = None
    outcome: str = "in_progress"
    """`succeeded`, `retry`, `defer`, `pause`, `failed`, `interrupted`, `in_progress` while the
    call runs, or `accepted` while a callback-mode call waits for its callback."""
    counted: bool = True
    """False for rate-limit deferrals, which do not spend the retry budget."""
    error: dict[str, Any] | None = None
    delay_s: float | None = None
    worker: str | None = None
    submission: str | None = None
    """Callback mode: the nonce in this call's callback URL; only its callback may end it."""
    api_task_id: str | None = None
    """Callback mode: the API's task id for this call, once accepted; its callback must carry it."""
    token_id: str | None = None
    """The token (its hash) this call went with; a pool spreads a job's calls over tokens."""


class JobRecord(BaseModel):
    """A job as stored in Redis: the source of truth for status, result and failure."""

    id: str
    state: JobState
    request: SwapRequest
    queue: str
    created_at: float
    updated_at: float
    idempotency_key: str | None = None
    batch: str | None = None
    batch_position: int | None = None
    """Which row of its batch this job is (0-based, rejected rows included)."""
    batch_line: int | None = None
    row_id: str | None = None
    """The input's own `id` for the row, when it had one."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    """Counted attempts: calls that spend the retry budget."""
    calls: int = 0
    """Every call made to the API for this job, billed or possibly billed."""
    api_task_id: str | None = None
    token_id: str | None = None
    """Callback mode: which token's limits the waiting call counts against (a hash)."""
    inflight_lease: str | None = None
    """Callback mode: the in-flight slot held until the callback arrives."""
    result: SwapResult | None = None
    last_error: dict[str, Any] | None = None
    failure_reason: str | None = None
    wait_reason: str | None = None
    """While paused or parked: what the job waits for (an open breaker, the rate limit...)."""
    paused_at: float | None = None
    """When the job last stopped for an open breaker (cleared when it runs again)."""
    paused_s: float = 0.0
    """Time spent paused by the breaker so far: it does not count against the deadline."""
    retried_at: float | None = None
    """When `batch retry-failed` sent the job again: its deadline starts over from there."""
    history: list[Attempt] = Field(default_factory=list)

    def error(self) -> FaceSwapError | None:
        return error_from_dict(self.last_error) if self.last_error else None

    @property
    def deadline_start(self) -> float:
        """Where the job's deadline is measured from: submission (or the last `retry-failed`),
        moved on by time paused."""
        return (self.retried_at or self.created_at) + self.paused_s

    @property
    def latency_s(self) -> float | None:
        return self.updated_at - self.created_at if self.state.finished else None
