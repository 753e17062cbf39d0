"""`.env.example`, rendered from `Settings`: each setting's description, default or example.

    python -m faceswap_jobs.ops.env_example > .env.example

The descriptions are the fields' docstrings in `faceswap_jobs/config.py`, so the file cannot
drift from the code: tests/test_env_example.py fails (with a diff) when it no longer matches.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from faceswap_jobs.config import Settings

HEADER = """\
# Copy to `.env` and uncomment what you change. Settings are read from FACESWAP_* environment
# variables or from a `.env` in the working directory; the real environment wins over the file.
# Each value below is the default in faceswap_jobs/config.py, or an example where there is no
# default or it is a secret (secrets: placeholders).
# docker compose also reads this `.env` for the ${...} values in docker-compose.yml.
# Generated from faceswap_jobs/config.py: python -m faceswap_jobs.ops.env_example > .env.example
"""

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "API",
        (
            "api_base_url",
            "allow_insecure_http",
            "api_token",
            "api_tokens",
            "api_tokens_file",
            "tokens_reload_s",
            "token_id",
            "connect_timeout_s",
            "read_timeout_s",
        ),
    ),
    ("Redis", ("redis_url", "redis_retry_s", "key_prefix")),
    (
        "Retries",
        (
            "max_attempts",
            "deadline_s",
            "backoff_base_s",
            "backoff_cap_s",
            "retry_after_cap_s",
            "max_countdown_s",
        ),
    ),
    (
        "Time limits (read timeout < soft < hard < visibility timeout)",
        ("soft_time_limit_s", "time_limit_s", "visibility_timeout_s"),
    ),
    ("Retention", ("result_ttl_s", "job_ttl_s")),
    (
        "Global limits per API token, shared by every worker",
        (
            "rate_per_s",
            "rate_burst",
            "rate_window_margin_s",
            "rate_floor_per_s",
            "rate_headroom",
            "rate_increase_per_s",
            "interactive_share",
            "max_in_flight",
            "lease_ttl_s",
            "short_wait_s",
            "breaker_cooldown_s",
            "breaker_max_cooldown_s",
        ),
    ),
    ("Budgets (`faceswap-jobs budget`)", ("price_per_call", "budget_warn_share")),
    (
        "Workers",
        (
            "worker_pool",
            "worker_concurrency",
            "interactive_queue",
            "bulk_queue",
            "bulk_high_water",
            "log_format",
        ),
    ),
    (
        "Callback mode",
        (
            "callback_base_url",
            "webhook_secret",
            "callback_wait_s",
            "webhook_host",
            "webhook_port",
            "webhook_max_body_bytes",
            "webhook_header_timeout_s",
            "webhook_body_timeout_s",
            "webhook_max_connections",
        ),
    ),
    ("Batch reports", ("report_allow_private_hosts",)),
    ("Flower", ("flower_host", "flower_port", "flower_user", "flower_password")),
)
"""Sections of the file, in order. A setting in none of them lands under "Other" (and
tests/test_env_example.py asks for a section)."""
OTHER = "Other"

TRAILER = """\
# --- docker compose only ---------------------------------------------------------------------
# Secret, no default: Redis' requirepass, also put into the worker's and Flower's
# FACESWAP_REDIS_URL. URL-safe, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
# FACESWAP_REDIS_PASSWORD=replace-with-a-long-random-redis-password
# Emulator time scale: 1.0 = 60-120 s per swap, like the real API.
# EMULATOR_TIME_SCALE=1.0
"""
RULE_WIDTH = 95


def ungrouped() -> list[str]:
    """Settings no section names (they are rendered under "Other")."""
    grouped = {name for _, names in GROUPS for name in names}
    return [name for name in Settings.model_fields if name not in grouped]


def shown_value(name: str, field: FieldInfo) -> str:
    """What the file shows for a setting: its first example if it has one (secrets, and settings
    that are unset by default), otherwise its default, written as the environment spells it."""
    value: Any = field.examples[0] if field.examples else field.default
    if value is None:
        raise ValueError(f"{name} has no default and no example to show")
    if isinstance(value, SecretStr):
        raise ValueError(f"{name} is a secret: give it a placeholder example")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_setting(name: str, field: FieldInfo) -> str:
    if not field.description:
        raise ValueError(f"{name} has no docstring to describe it")
    comment = [f"# {line}".rstrip() for line in field.description.splitlines()]
    return "\n".join([*comment, f"# FACESWAP_{name.upper()}={shown_value(name, field)}"])


def render() -> str:
    """The whole `.env.example`."""
    fields = Settings.model_fields
    groups = [(title, [n for n in names if n in fields]) for title, names in GROUPS]
    if extra := ungrouped():
        groups.append((OTHER, extra))
    sections = []
    for title, names in groups:
        rule = f"# --- {title} ".ljust(RULE_WIDTH, "-")
        sections.append("\n".join([rule, *(render_setting(n, fields[n]) for n in names)]))
    return "\n\n".join([HEADER.rstrip(), *sections, TRAILER.rstrip()]) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
