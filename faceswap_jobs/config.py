"""Settings: the only place that reads the environment.

Every other module receives a `Settings` instance, so tests and embedded runs (the demo) can build
one explicitly and nothing reads `os.environ` behind their back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from faceswap_jobs.secret_strength import GENERATE_HINT, weakness

DEFAULT_API_BASE_URL = "http://127.0.0.1:8700"
"""The local emulator's default address; the real service is https://api.acedata.cloud."""
DEFAULT_API_TOKEN = "emulator-token"
"""The local emulator's token: a process that holds no real token (a producer, an operator)."""

MAX_SYNC_THREADS = 2000
"""Beyond this a single worker process spends more on thread switching than it saves."""
CALLBACK_MODE_THREADS = 32
DEFAULT_JOB_TTL_S = 30 * 86400.0

WEBHOOK_SECRET_MIN_CHARS = 32
WEBHOOK_SECRET_MIN_BITS = 128.0
"""Whoever guesses the webhook secret can sign callbacks: it must be a random key, and
`secrets.token_urlsafe(32)` scores 181-229 estimated bits (see `secret_strength`)."""
FLOWER_PASSWORD_MIN_CHARS = 12
FLOWER_PASSWORD_MIN_BITS = 32.0
"""People type the Flower password, so the bar only refuses the obviously weak: short ones and
repetitions such as `passwordpassword` (28 bits) or `abcabcabcabc` (10)."""
FLOWER_PASSWORD_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(16))'"
_PLAIN_HTTP_EXPOSES = {
    "api_base_url": "the API token (Authorization: Bearer)",
    "callback_base_url": "each job's signed callback URL and its result",
}


MAX_POOL_TOKENS = 64
TOKEN_FILE_MAX_BYTES = 1 << 20


class PoolToken(BaseModel):
    """One API token of a pool: its own limits, and how much of the work it should take."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    token: SecretStr
    weight: float = Field(default=1.0, gt=0, le=1000)
    """Share of the work when several tokens have room: a token of weight 2 takes twice the
    calls of one of weight 1 while neither is at its limits."""
    rate_per_s: float | None = Field(default=None, gt=0, le=100_000)
    """This token's rate ceiling; None: FACESWAP_RATE_PER_S."""
    max_in_flight: int | None = Field(default=None, ge=1, le=100_000)
    """This token's in-flight cap; None: FACESWAP_MAX_IN_FLIGHT."""
    rate_burst: int | None = Field(default=None, ge=0, le=10_000)
    """This token's burst; None: FACESWAP_RATE_BURST."""

    @field_validator("token")
    @classmethod
    def _usable_token(cls, value: SecretStr) -> SecretStr:
        """It goes into an HTTP header: a blank, a space, a control character or a non-ASCII
        one would be a malformed request at every call, not an error at start-up."""
        token = value.get_secret_value()
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError("token must be non-empty printable ASCII, without spaces")
        if len(token) > 4096:
            raise ValueError("token is longer than 4096 characters")
        return value

    @property
    def id(self) -> str:
        """What names the token in Redis keys, logs and metrics: a hash, never the token."""
        return token_hash(self.token.get_secret_value())


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


_TOKEN_LIST: TypeAdapter[list[PoolToken | str]] = TypeAdapter(list[PoolToken | str])


def parse_token_pool(raw: Any) -> tuple[PoolToken, ...]:
    """A pool from JSON-shaped data: a list of tokens, each a string or an object (`token`,
    `weight`, `rate_per_s`, `max_in_flight`, `rate_burst`). Raises ValueError naming the item
    and the problem, never a token: the error is printed and logged."""
    if not isinstance(raw, list | tuple):
        raise ValueError(
            'token pool must be a JSON list: ["TOKEN", {"token": "TOKEN", "weight": 2}, ...]'
        )
    try:
        items = _TOKEN_LIST.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"] if part not in ("str", "PoolToken"))
        raise ValueError(f"token pool item {where}: {first['msg']}") from None
    tokens = tuple(PoolToken(token=SecretStr(item)) if isinstance(item, str) else item
                   for item in items)  # fmt: skip
    if not tokens:
        raise ValueError("token pool is empty: give at least one token")
    if len(tokens) > MAX_POOL_TOKENS:
        raise ValueError(f"token pool has {len(tokens)} tokens; at most {MAX_POOL_TOKENS}")
    seen: set[str] = set()
    for position, token in enumerate(tokens):
        if token.id in seen:
            raise ValueError(f"token pool item {position}: the same token twice ({token.id})")
        seen.add(token.id)
    return tokens


def read_token_file(path: Path) -> tuple[PoolToken, ...]:
    """The pool a tokens file holds (JSON, as FACESWAP_API_TOKENS); ValueError when unreadable."""
    try:
        with path.open("rb") as handle:
            data = handle.read(TOKEN_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"tokens file {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > TOKEN_FILE_MAX_BYTES:
        raise ValueError(f"tokens file {path}: larger than {TOKEN_FILE_MAX_BYTES} bytes")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError(f"tokens file {path}: not JSON (a list of tokens)") from None
    try:
        return parse_token_pool(raw)
    except ValueError as exc:
        raise ValueError(f"tokens file {path}: {exc}") from None


class Settings(BaseSettings):
    """Configuration for producers, workers, the CLI and Flower (`FACESWAP_*` or `.env`)."""

    model_config = SettingsConfigDict(
        env_prefix="FACESWAP_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        # Each field's docstring is its description: `.env.example` is rendered from them.
        use_attribute_docstrings=True,
    )

    api_base_url: str = DEFAULT_API_BASE_URL
    """Base URL of the Face Swap API; the default is the local emulator. Real service:
    https://api.acedata.cloud
    http(s) with a host only: no user:password@, query or fragment. Plain http:// is accepted to
    loopback (localhost, 127.0.0.0/8, ::1) and elsewhere only with FACESWAP_ALLOW_INSECURE_HTTP."""
    allow_insecure_http: bool = False
    """true lets the API and callback base URLs be http:// beyond loopback (the token and the
    callback URLs then cross the network in clear): only for a private network you trust, such as
    the compose or cluster network to the emulator."""
    api_token: SecretStr = Field(
        default=SecretStr(DEFAULT_API_TOKEN), examples=["replace-with-your-acedata-token"]
    )
    """Secret, read by workers only (producers do not need it). Default: emulator-token, the
    emulator's default token."""
    token_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{16}$", examples=["0123456789abcdef"]
    )
    """Names the token for operator commands (`limits`, `pause`, `resume`, `metrics`) without
    the token itself: the 16-hex-digit id `limits` and the metrics show."""
    api_tokens: tuple[PoolToken, ...] | None = Field(
        default=None, examples=['[{"token": "tok-a", "rate_per_s": 10}, "tok-b"]']
    )
    """Secret, read by workers only. A pool of tokens instead of FACESWAP_API_TOKEN: a JSON list,
    each a token or an object with `token` and optional `weight` (default 1), `rate_per_s`,
    `max_in_flight` and `rate_burst` (defaults: the settings of the same name). Each token has
    its own limits and breaker; a call goes to the token with the most room."""
    api_tokens_file: Path | None = Field(default=None, examples=["/run/secrets/faceswap-tokens"])
    """Unset by default. A file holding the pool (the same JSON as FACESWAP_API_TOKENS), read
    again when it changes: tokens are added or taken out without restarting the workers."""
    tokens_reload_s: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between looks at FACESWAP_API_TOKENS_FILE, and at the tokens an operator retired
    (`faceswap-jobs tokens retire`) at most this stale."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Broker, result backend and job store. A shared Redis needs a password (requirepass), in the
    URL: redis://:PASSWORD@host:6379/0. Over TLS:
    rediss://:PASSWORD@host:6379/0?ssl_cert_reqs=required&ssl_ca_certs=/path/to/ca.crt"""
    redis_retry_s: float = Field(default=45.0, ge=0, le=3600)
    """Seconds a Redis command keeps retrying a lost connection (a restart) before it fails."""
    key_prefix: str = Field(default="faceswap", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    """Prefix of our own keys (job records, leases, dead-letter queue); [A-Za-z0-9_.-]{1,40}."""

    connect_timeout_s: float = Field(default=5.0, gt=0)
    """Seconds to open a TCP/TLS connection to the API."""
    read_timeout_s: float = Field(default=150.0, gt=0)
    """Seconds to wait for the answer; must be < FACESWAP_SOFT_TIME_LIMIT_S."""

    max_attempts: int = Field(default=8, ge=1, le=100)
    """Counted calls per job (429s are not counted)."""
    deadline_s: float = Field(default=3600.0, gt=0)
    """Seconds from submission after which no further try is scheduled."""
    backoff_base_s: float = Field(default=2.0, gt=0)
    """Backoff with full jitter: uniform in [0, min(cap, base * 2^(attempts-1))] s; the base."""
    backoff_cap_s: float = Field(default=120.0, gt=0)
    """The backoff's cap, seconds; <= FACESWAP_MAX_COUNTDOWN_S."""
    retry_after_cap_s: float = Field(default=300.0, gt=0)
    """Longest Retry-After we honour, seconds; <= FACESWAP_MAX_COUNTDOWN_S."""
    max_countdown_s: float = Field(default=600.0, gt=0)
    """Longest delay handed to the broker, seconds; < FACESWAP_VISIBILITY_TIMEOUT_S."""

    soft_time_limit_s: float = Field(default=170.0, gt=0)
    """Celery's soft time limit per task run, seconds (prefork only: the call then counts as
    ambiguous, `soft_time_limit`; the threads and solo pools stop a call by its read timeout)."""
    time_limit_s: float = Field(default=190.0, gt=0)
    """Celery's hard time limit per task run, seconds (prefork only)."""
    visibility_timeout_s: float = Field(default=3600.0, gt=0)
    """Seconds before Redis hands an unacknowledged message to another worker."""
    result_ttl_s: float = Field(default=7 * 86400.0, gt=0)
    """Seconds a finished job (record, history, Celery result) is kept: 7 days."""
    job_ttl_s: float = Field(default=DEFAULT_JOB_TTL_S, gt=0)
    """Seconds an unfinished job record is kept: 30 days."""

    rate_per_s: float = Field(default=10.0, gt=0)
    """Ceiling of the call rate, calls/s; set it to what your plan allows."""
    rate_burst: int = Field(default=1, ge=0)
    """Calls allowed back to back above the rate (GCRA burst); 0 is the strict mode: no 1-s window
    holds more than the rate's calls as the provider sees them."""
    rate_floor_per_s: float = Field(default=0.5, gt=0)
    """Lowest rate 429s can push the token down to, calls/s."""
    rate_headroom: float = Field(default=0.95, gt=0, le=1)
    """A cut sets the rate to this fraction of the limit the 429s reveal; 0 < x <= 1."""
    rate_window_margin_s: float | None = Field(default=None, ge=0, le=1, examples=[0.05])
    """The held window is a second plus this margin for the senders' jitter, s (unset: 0.05 in
    strict mode, 0 otherwise)."""
    rate_increase_per_s: float = Field(default=0.5, gt=0)
    """How fast the rate climbs back while calls succeed, calls/s per second."""
    interactive_share: float = Field(default=0.2, ge=0, lt=1)
    """Share of the rate bulk jobs may not use (kept for interactive jobs); 0 <= x < 1."""
    max_in_flight: int = Field(default=64, ge=1)
    """Calls in flight at once."""
    lease_ttl_s: float = Field(default=30.0, gt=0)
    """Seconds an in-flight slot lease lasts; renewed while the call runs."""
    short_wait_s: float = Field(default=2.0, ge=0)
    """Longest a worker waits in line for a slot, seconds; longer waits park the job in Redis."""
    breaker_cooldown_s: float = Field(default=60.0, gt=0)
    """Circuit breaker after auth/balance failures: first cool-down before a probe call, s."""
    breaker_max_cooldown_s: float = Field(default=900.0, gt=0)
    """The longest the breaker's cool-down doubles to after failed probes, seconds."""
    price_per_call: Decimal | None = Field(default=None, gt=0, examples=["0.01"])
    """Unset by default. What one call costs (a decimal, in any currency): budgets may then be
    given in money (`faceswap-jobs budget set day --money 50`), kept as whole calls."""
    budget_warn_share: float = Field(default=0.8, gt=0, le=1)
    """Share of a budget's cap whose crossing is announced once (a log line, a `budget-warning`
    event, the budget gauges); 0 < x <= 1."""

    callback_base_url: str | None = Field(default=None, examples=["https://hooks.example.com"])
    """Unset by default (sync mode). When set, workers submit with a callback URL under this base
    and the receiver (`faceswap-jobs webhook`) settles the jobs; URL rules as for the API base."""
    webhook_secret: SecretStr | None = Field(default=None, examples=["replace-me"])
    """Secret, no default; required in callback mode, by the receiver, and checked whenever set:
    at least 32 characters and ~128 bits of estimated entropy (repetitions and small alphabets are
    refused). Make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"""
    callback_wait_s: float = Field(default=300.0, gt=0)
    """Seconds after which the reconciler gives up on a callback; each call's callback URL expires
    an hour after this."""
    webhook_host: str = "127.0.0.1"
    """Where `faceswap-jobs webhook` listens: address."""
    webhook_port: int = Field(default=8800, ge=1, le=65535)
    """Where `faceswap-jobs webhook` listens: port."""
    webhook_max_body_bytes: int = Field(default=65536, ge=1024)
    """Largest callback body the receiver reads, bytes; a larger one gets 413."""
    webhook_header_timeout_s: float = Field(default=10.0, gt=0)
    """A connection whose request head is not complete within this many seconds is closed (slow
    clients)."""
    webhook_body_timeout_s: float = Field(default=10.0, gt=0)
    """A request body not complete this long after its head gets a 408 and the connection closes."""
    webhook_max_connections: int = Field(default=1000, ge=8)
    """Open connections per receiver process; beyond it the longest-waiting one is closed."""

    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    """threads, prefork or solo."""
    worker_concurrency: int | None = Field(default=None, ge=1, le=5000, examples=[32])
    """Calls in flight per worker (threads, or processes with prefork); 1..5000. Unset: sized
    from FACESWAP_MAX_IN_FLIGHT, or the sum of a pool's caps (at most 32 in callback mode; see
    `Settings.concurrency`)."""
    interactive_queue: str = "faceswap.interactive"
    """Celery queue of interactive jobs."""
    bulk_queue: str = "faceswap.bulk"
    """Celery queue of bulk jobs (batches and backfills)."""
    bulk_high_water: int = Field(default=100_000, ge=10)
    """A backfill pauses while the bulk queue holds this many messages (~0.7 KB each); >= 10."""

    flower_host: str = "127.0.0.1"
    """Where `faceswap-jobs flower` listens: address."""
    flower_port: int = Field(default=5555, ge=1, le=65535)
    """Where `faceswap-jobs flower` listens: port."""
    flower_user: str = Field(default="admin", pattern=r"^[^:,\s]+$")
    """Flower's basic-auth user; no ':', ',' or spaces."""
    flower_password: SecretStr | None = Field(default=None, examples=["replace-me"])
    """Secret, no default: `faceswap-jobs flower` refuses to start without it. At least 12
    characters, not a repetition, no ',' or ':' (Flower splits --basic-auth on them); e.g.
    python3 -c 'import secrets; print(secrets.token_urlsafe(16))'"""

    log_format: Literal["text", "json"] = "text"
    """`json`: workers and the metrics exporter log one JSON object per line; job events carry
    job id, batch, attempt, API task id, trace id and error code; secrets are redacted."""

    report_allow_private_hosts: bool = False
    """`batch report` fetches pictures from public addresses only; true also allows loopback,
    private and link-local ones (cloud metadata addresses stay refused)."""

    @model_validator(mode="after")
    def _time_limits_nest(self) -> Settings:
        """A stalled call must be killed before the broker hands its message to another worker."""
        chain = [
            ("read_timeout_s", self.read_timeout_s),
            ("soft_time_limit_s", self.soft_time_limit_s),
            ("time_limit_s", self.time_limit_s),
            ("visibility_timeout_s", self.visibility_timeout_s),
        ]
        for (low_name, low), (high_name, high) in itertools.pairwise(chain):
            if not low < high:
                raise ValueError(f"{low_name} ({low}) must be less than {high_name} ({high})")
        if not self.max_countdown_s < self.visibility_timeout_s:
            raise ValueError(
                f"max_countdown_s ({self.max_countdown_s}) must be less than "
                f"visibility_timeout_s ({self.visibility_timeout_s})"
            )
        if self.retry_after_cap_s > self.max_countdown_s:
            raise ValueError("retry_after_cap_s must not exceed max_countdown_s")
        if self.backoff_cap_s > self.max_countdown_s:
            raise ValueError("backoff_cap_s must not exceed max_countdown_s")
        if self.callback_base_url is not None and self.webhook_secret is None:
            raise ValueError(
                f"callback mode (callback_base_url) needs webhook_secret; make one with: "
                f"{GENERATE_HINT}"
            )
        return self

    @field_validator("api_base_url", "callback_base_url")
    @classmethod
    def _plain_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Only a plain http(s) origin (and path): anything else is a typo or a trap."""
        if value is None:
            return None
        problem = base_url_problem(value)
        if problem:
            raise ValueError(f"{info.field_name}: {problem}")
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _token_pool(cls, value: Any) -> tuple[PoolToken, ...] | None:
        """The same checks for the environment's pool as for a tokens file's."""
        return None if value is None else parse_token_pool(value)

    @model_validator(mode="after")
    def _one_source_of_tokens(self) -> Settings:
        """Two places naming the tokens leave a reader guessing which one calls."""
        given = [name for name, on in (
            ("api_tokens", self.api_tokens is not None),
            ("api_tokens_file", self.api_tokens_file is not None),
            ("api_token", self.api_token.get_secret_value() != DEFAULT_API_TOKEN),
        ) if on]  # fmt: skip
        if len(given) > 1:
            raise ValueError(f"set one of {', '.join(given)}: each names the tokens to call with")
        return self

    def token_pool(self) -> tuple[PoolToken, ...]:
        """The tokens to call with now: the tokens file (read on every call), the pool, or the
        one FACESWAP_API_TOKEN. Raises ValueError when the file cannot be read."""
        if self.api_tokens_file is not None:
            return read_token_file(self.api_tokens_file)
        if self.api_tokens is not None:
            return self.api_tokens
        return (PoolToken(token=self.api_token),)

    def pool_rate_per_s(self, tokens: Sequence[PoolToken]) -> float:
        """The ceilings of `tokens` together: what a pool of them may call at."""
        return sum(token.rate_per_s or self.rate_per_s for token in tokens)

    @model_validator(mode="after")
    def _token_id_names_the_token(self) -> Settings:
        """A process holding the token and an id for another would read one token's limits
        and spend another's."""
        if self.token_id is None or self.api_token.get_secret_value() == DEFAULT_API_TOKEN:
            return self
        if token_hash(self.api_token.get_secret_value()) != self.token_id:
            raise ValueError("token_id does not name api_token: set one of them, or both alike")
        return self

    @model_validator(mode="after")
    def _plain_http_needs_opt_in(self) -> Settings:
        """Plain http is fine to loopback; elsewhere it needs `allow_insecure_http`, stated."""
        for name, exposed in _PLAIN_HTTP_EXPOSES.items():
            url = getattr(self, name)
            if url is None or self.allow_insecure_http:
                continue
            parts = urlsplit(url)
            if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
                raise ValueError(
                    f"{name}: http:// to {parts.hostname} would send {exposed} in clear; use "
                    "https://, or set FACESWAP_ALLOW_INSECURE_HTTP=true on a network you trust"
                )
        return self

    @field_validator("webhook_secret")
    @classmethod
    def _strong_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """Checked whenever set: a receiver or a worker with a guessable secret is forgeable."""
        if value is None:
            return None
        reason = weakness(
            value.get_secret_value(),
            min_chars=WEBHOOK_SECRET_MIN_CHARS,
            min_bits=WEBHOOK_SECRET_MIN_BITS,
        )
        if reason:
            raise ValueError(f"webhook_secret: {reason}; make one with: {GENERATE_HINT}")
        return value

    @field_validator("flower_password")
    @classmethod
    def _usable_flower_password(cls, value: SecretStr | None) -> SecretStr | None:
        """Flower splits its credentials on ',' and ':': such a password would silently break.
        People choose it, so only the obviously weak are refused (see FLOWER_PASSWORD_MIN_BITS)."""
        if value is None:
            return None
        secret = value.get_secret_value()
        if any(ch in secret for ch in ",:") or secret.strip() != secret:
            raise ValueError("flower_password: no ',' ':' or edge spaces (Flower splits on them)")
        reason = weakness(
            secret, min_chars=FLOWER_PASSWORD_MIN_CHARS, min_bits=FLOWER_PASSWORD_MIN_BITS
        )
        if reason:
            raise ValueError(f"flower_password: {reason}; make one with: {FLOWER_PASSWORD_HINT}")
        return value

    @property
    def concurrency(self) -> int:
        """Threads per worker. A sync call holds its thread for the whole swap, so a worker needs
        one per call it may have in flight; in callback mode a thread only submits, so few do."""
        if self.worker_concurrency is not None:
            return self.worker_concurrency
        if self.callback_base_url is not None:
            return min(self.max_in_flight, CALLBACK_MODE_THREADS)
        return min(self.pool_in_flight, MAX_SYNC_THREADS)

    @property
    def pool_in_flight(self) -> int:
        """Calls the tokens may have in flight together: a pool's caps add up (its tokens file as
        it reads now; FACESWAP_MAX_IN_FLIGHT when it cannot be read)."""
        try:
            tokens = self.token_pool()
        except ValueError:
            return self.max_in_flight
        return sum(token.max_in_flight or self.max_in_flight for token in tokens)

    @property
    def rate_wait_s(self) -> float:
        """Longest a thread sleeps for its rate slot before parking the job. A full pool of
        `concurrency` threads queues `concurrency / rate` seconds deep, and its threads have
        nothing else to do: parking them sooner would only churn messages."""
        return max(self.short_wait_s, self.concurrency / self.rate_per_s)

    @property
    def swap_url(self) -> str:
        return self.api_base_url.rstrip("/") + "/face/swap"


def is_loopback_host(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1: traffic that never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be a base URL we send secrets to, or None. The URL is ours (settings),
    but a credential in it would be logged and a query would be mangled by path joining."""
    if any(ch.isspace() or ch == "\\" or not ch.isprintable() for ch in url):
        return "contains a space, backslash or control character"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        given = f", not {parts.scheme}://" if parts.scheme else ""
        return f"must be an http:// or https:// URL{given}"
    if not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@); the token goes in FACESWAP_API_TOKEN"
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return "has an invalid port"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not carry a query or fragment"
    return None
