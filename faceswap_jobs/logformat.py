"""Log lines as JSON objects (`FACESWAP_LOG_FORMAT=json`), with secrets taken out of every line.

One object per line (time, level, logger, message, and the job fields a job-event line carries:
job id, batch, attempt, API task id, trace id, error code), so a log pipeline indexes job events
without parsing text. Secrets are redacted from the message and every field: the values this
process holds (API token, webhook secret, Flower password) and anything shaped like a credential
(`Bearer ...`, `token=...`, `user:pass@` in a URL), because an exception's text may quote a
request. Celery configures a worker's logging itself, so `use_log_format` also hooks Celery's
signals to reformat the handlers it installs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from faceswap_jobs.config import Settings

JOB_FIELDS = ("job_id", "batch", "queue", "attempt", "token", "api_task_id", "trace_id",
              "error_code", "status")  # fmt: skip
"""`extra=` keys a job-event line may carry; the JSON line has them when present."""
REDACTED = "***"
_SHAPES = (
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]*@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?i)\b(bearer|token|password|passwd|secret|authorization)\b([\s:=\"']+(?:bearer\s+)?)"
                r"(?!\*\*\*)[^\s\"',;&]+"), r"\1\2" + REDACTED),
)  # fmt: skip
"""Credentials in URLs and `token=...` / `Bearer ...`-shaped text."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without `secrets` and without anything shaped like a credential."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, secrets redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._clean(record.getMessage()),
        }
        for name in JOB_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, int) else self._clean(str(value))
        if record.exc_info:
            line["exception"] = self._clean(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = self._clean(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)


_json: JsonFormatter | None = None


def held_secrets(settings: Settings) -> list[str]:
    """The secret values `settings` holds, to be redacted wherever they appear."""
    held = [settings.api_token, settings.webhook_secret, settings.flower_password]
    with contextlib.suppress(ValueError):
        held += [member.token for member in settings.token_pool()]
    return [s.get_secret_value() for s in held if s is not None and s.get_secret_value()]


def use_log_format(settings: Settings, *loggers: str) -> None:
    """Make this process log as `settings.log_format`: for `json`, every handler that the root
    logger and `loggers` have now, and every one Celery sets up later (a worker's, its task
    logger's), gets a `JsonFormatter`."""
    global _json
    if settings.log_format != "json":
        return
    first = _json is None
    _json = JsonFormatter(held_secrets(settings))
    for name in ("", *loggers):
        reformat(logging.getLogger(name))
    if first:
        from celery import signals

        signals.after_setup_logger.connect(_on_celery_logger, weak=False)
        signals.after_setup_task_logger.connect(_on_celery_logger, weak=False)


def reformat(logger: logging.Logger) -> None:
    if _json is not None:
        for handler in logger.handlers:
            handler.setFormatter(_json)


def _on_celery_logger(logger: logging.Logger, **_: Any) -> None:
    reformat(logger)
