"""The emulator's configuration: one frozen dataclass, its validation and its command line.

The same `validate_config` guards the command line and `PUT /_emulator/config`, so a value the
server refuses at start-up is refused at runtime too.
"""

import argparse
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
RATE_WINDOWS = ("bucket", "sliding")
"""Per-token rate-limit strategies: a token bucket, or a strict sliding window of 1 s."""
TOKEN_LIST_FIELDS = ("tokens", "expired_tokens", "used_up_tokens", "disabled_tokens")
"""The accepted tokens and the three refused kinds; `PUT /_emulator/config` may replace each,
so a drill can revoke a token mid-run and restore it."""
MAX_TOKEN_CHARS = 4096
"""Longest token accepted in a list or a rate override: a header line, not a payload."""

TokenRates = tuple[tuple[str, float | None], ...]
"""Per-token rate overrides, (token, calls/s or None for no limit), each token at most once."""


@dataclass(frozen=True)
class FaultRates:
    """Probabilities (0..1) of each random fault, drawn once per call in this field order."""

    status_429: float = 0.0
    status_500: float = 0.0
    hang: float = 0.0
    reset: float = 0.0
    malformed: float = 0.0


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator can be told; every simulated duration is scaled by `time_scale`."""

    host: str = "127.0.0.1"
    port: int = 8700
    public_url: str | None = None
    tokens: tuple[str, ...] = ("emulator-token",)
    expired_tokens: tuple[str, ...] = ()
    used_up_tokens: tuple[str, ...] = ()
    disabled_tokens: tuple[str, ...] = ()
    latency_min_s: float = 60.0
    latency_max_s: float = 120.0
    time_scale: float = 1.0
    rate_per_s: float | None = None
    token_rates: TokenRates = ()
    burst: float | None = None
    rate_window: str = "bucket"
    faults: FaultRates = field(default_factory=FaultRates)
    retry_after_s: float = 1.0
    hang_s: float = 3600.0
    callback_delay_s: float = 0.0
    callback_jitter_s: float = 0.0
    callback_loss: float = 0.0
    callback_duplicate: float = 0.0
    seed: int | None = None
    storage_dir: Path | None = None
    image_size: int = 512
    log_level: str = "warning"

    @property
    def effective_burst(self) -> float:
        """Bucket capacity: the configured burst, else one second's worth of calls (at least 1)."""
        return self.burst_for(self.rate_per_s)

    def burst_for(self, rate_per_s: float | None) -> float:
        """Bucket capacity of a token limited to `rate_per_s`: a token with a rate of its own
        gets one second's worth of that rate, as `effective_burst` does for `rate_per_s`."""
        if self.burst is not None:
            return self.burst
        return max(1.0, rate_per_s or 1.0)

    @cached_property
    def _rate_by_token(self) -> dict[str, float | None]:
        return dict(self.token_rates)

    def rate_for(self, token: str) -> float | None:
        """Calls/s allowed to `token`: its own override when it has one, else `rate_per_s`
        (None: no limit). A provider limits each token on its own plan, not all alike."""
        return self._rate_by_token.get(token, self.rate_per_s)


def _check_probability(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_rate(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 or null, got {value}")


def _check_token(name: str, token: object) -> None:
    """A token a client can send in a header; the message never repeats the token."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"{name}: every token must be a string of 1 to {MAX_TOKEN_CHARS} chars")
    if token != token.strip():
        raise ValueError(f"{name}: a token must not start or end with a space")


def _check_tokens(config: EmulatorConfig) -> None:
    for name in TOKEN_LIST_FIELDS:
        for token in getattr(config, name):
            _check_token(name, token)
    if not config.tokens:
        raise ValueError("tokens: at least one accepted token is required")
    for token, rate in config.token_rates:
        _check_token("token_rates", token)
        _check_rate("token_rates: a rate", rate)
    if any(n > 1 for n in Counter(token for token, _ in config.token_rates).values()):
        raise ValueError("token_rates: a token is given more than once")


def validate_config(config: EmulatorConfig) -> None:
    """Raise ValueError with a one-line reason when the configuration cannot be served."""
    _check_tokens(config)
    if not 0 <= config.port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {config.port}")
    if config.public_url is not None:
        parts = urlsplit(config.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"public_url must be an http(s) URL, got {config.public_url!r}")
    for name in ("latency_min_s", "latency_max_s", "time_scale", "retry_after_s", "hang_s"):
        _check_non_negative(name, getattr(config, name))
    _check_non_negative("callback_delay_s", config.callback_delay_s)
    _check_non_negative("callback_jitter_s", config.callback_jitter_s)
    if config.latency_min_s > config.latency_max_s:
        raise ValueError(
            f"latency_min_s ({config.latency_min_s}) must not exceed "
            f"latency_max_s ({config.latency_max_s})"
        )
    _check_rate("rate_per_s", config.rate_per_s)
    if config.burst is not None and not (math.isfinite(config.burst) and config.burst >= 1):
        raise ValueError(f"burst must be a finite number >= 1 or null, got {config.burst}")
    if config.rate_window not in RATE_WINDOWS:
        raise ValueError(
            f"rate_window must be one of {', '.join(RATE_WINDOWS)}, got {config.rate_window!r}"
        )
    for name in ("429", "500", "hang", "reset", "malformed"):
        field_name = name if name.isalpha() else f"status_{name}"
        _check_probability(f"fault_{name}", getattr(config.faults, field_name))
    _check_probability("callback_loss", config.callback_loss)
    _check_probability("callback_duplicate", config.callback_duplicate)
    if not 16 <= config.image_size <= 4096:
        raise ValueError(f"image_size must be between 16 and 4096 px, got {config.image_size}")
    if config.log_level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")


def _token_list(text: str) -> tuple[str, ...]:
    """Comma-separated tokens, blanks dropped, order kept."""
    return tuple(token.strip() for token in text.split(",") if token.strip())


def _token_rate(text: str) -> tuple[str, float | None]:
    """`TOKEN=RATE` (RATE a number, or `none` for no limit); split at the last `=`, so a token
    may end in base64 padding. The error never repeats the text: it holds a token."""
    token, sep, rate = text.rpartition("=")
    if not sep or not token:
        raise argparse.ArgumentTypeError("expected TOKEN=RATE (RATE in calls/s, or none)")
    if rate.strip().lower() == "none":
        return token, None
    try:
        return token, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected TOKEN=RATE with RATE a number of calls/s, or none"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The `python -m faceswap_jobs.emulator` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m faceswap_jobs.emulator",
        usage="%(prog)s [options]",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Local emulator of the AceData Cloud Face Swap API, with fault injection.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8700)
    add(
        "--public-url",
        default=None,
        help="base URL of returned image_url; unset = the request's own",
    )
    add("--tokens", type=_token_list, default=("emulator-token",), help="comma-separated tokens")
    add("--expired-tokens", type=_token_list, default=(), help="answered 401 token_expired")
    add("--used-up-tokens", type=_token_list, default=(), help="answered 403 used_up")
    add("--disabled-tokens", type=_token_list, default=(), help="answered 403 disabled")
    add("--latency-min-s", type=float, default=60.0)
    add("--latency-max-s", type=float, default=120.0)
    add("--time-scale", type=float, default=1.0, help="multiplies every simulated duration")
    add(
        "--rate-per-s",
        type=float,
        default=None,
        help="per-token calls per second; unset = unlimited",
    )
    add(
        "--token-rate",
        type=_token_rate,
        action="append",
        default=[],
        metavar="TOKEN=RATE",
        help="this token's own calls per second (none = unlimited), instead of --rate-per-s; "
        "repeatable",
    )
    add(
        "--burst",
        type=float,
        default=None,
        help="bucket size in calls (bucket only); unset = max(1, rate)",
    )
    add(
        "--rate-window",
        default="bucket",
        choices=RATE_WINDOWS,
        help="bucket: token bucket of --burst; sliding: at most floor(rate) calls (at least 1) "
        "in any 1 s window, --burst ignored",
    )
    for name in ("500", "429", "hang", "reset", "malformed"):
        add(f"--fault-{name}", type=float, default=0.0, help="probability 0..1")
    add("--retry-after-s", type=float, default=1.0, help="Retry-After of injected 429s (scaled)")
    add("--hang-s", type=float, default=3600.0, help="wall seconds a hang lasts (not scaled)")
    add("--callback-delay-s", type=float, default=0.0, help="extra callback delay (scaled)")
    add(
        "--callback-jitter-s",
        type=float,
        default=0.0,
        help="random extra callback delay, uniform up to this (scaled): callbacks arrive reordered",
    )
    add("--callback-loss", type=float, default=0.0, help="probability a callback is lost")
    add("--callback-duplicate", type=float, default=0.0, help="probability it is sent twice")
    add("--seed", type=int, default=None)
    add(
        "--storage-dir",
        type=Path,
        default=None,
        help="folder of result PNGs; unset = a fresh temp dir",
    )
    add("--image-size", type=int, default=512, help="longest side of result images, px")
    add("--log-level", default="warning", type=str.lower, choices=LOG_LEVELS)
    return parser


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    """Parse and validate; a bad option exits with a one-line argparse error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        tokens=args.tokens,
        expired_tokens=args.expired_tokens,
        used_up_tokens=args.used_up_tokens,
        disabled_tokens=args.disabled_tokens,
        latency_min_s=args.latency_min_s,
        latency_max_s=args.latency_max_s,
        time_scale=args.time_scale,
        rate_per_s=args.rate_per_s,
        token_rates=tuple(args.token_rate),
        burst=args.burst,
        rate_window=args.rate_window,
        faults=FaultRates(
            status_429=args.fault_429,
            status_500=args.fault_500,
            hang=args.fault_hang,
            reset=args.fault_reset,
            malformed=args.fault_malformed,
        ),
        retry_after_s=args.retry_after_s,
        hang_s=args.hang_s,
        callback_delay_s=args.callback_delay_s,
        callback_jitter_s=args.callback_jitter_s,
        callback_loss=args.callback_loss,
        callback_duplicate=args.callback_duplicate,
        seed=args.seed,
        storage_dir=args.storage_dir,
        image_size=args.image_size,
        log_level=args.log_level,
    )
    try:
        validate_config(config)
    except ValueError as exc:
        parser.error(str(exc))
    return config
