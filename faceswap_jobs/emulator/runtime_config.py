"""The JSON face of the configuration: `GET` and `PUT /_emulator/config`.

Tokens are shown only as hashes, also in a refusal's message. An update is validated whole
(merged, then checked by the same `validate_config` as the command line) before anything
changes, so a bad PUT changes nothing.
"""

import dataclasses
from typing import Any, Literal, overload

from .auth import token_hash
from .config import RATE_WINDOWS, TOKEN_LIST_FIELDS, EmulatorConfig, TokenRates, validate_config
from .faults import Rule, RuleBook, parse_rules

FAULT_FIELDS = {
    "fault_429": "status_429",
    "fault_500": "status_500",
    "fault_hang": "hang",
    "fault_reset": "reset",
    "fault_malformed": "malformed",
}
"""JSON name → FaultRates field."""

NUMBER_FIELDS = (
    "retry_after_s",
    "latency_min_s",
    "latency_max_s",
    "time_scale",
    "callback_delay_s",
    "callback_jitter_s",
    "callback_loss",
    "callback_duplicate",
)
"""Top-level numeric settings an update may change."""

NULLABLE_NUMBER_FIELDS = ("rate_per_s", "burst")
"""Numeric settings where null means "off" / "default"."""

CHOICE_FIELDS = {"rate_window": RATE_WINDOWS}
"""String settings an update may change, and the values each accepts."""

UPDATABLE = frozenset(
    (
        *FAULT_FIELDS,
        *NUMBER_FIELDS,
        *NULLABLE_NUMBER_FIELDS,
        *CHOICE_FIELDS,
        *TOKEN_LIST_FIELDS,
        "token_rates",
        "rules",
    )
)


def config_view(config: EmulatorConfig, rules: RuleBook, storage_dir: str) -> dict[str, Any]:
    """The running configuration as JSON, tokens replaced by their hashes.

    `storage_dir` is the folder in use (a temporary one unless configured).
    """
    view: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "public_url": config.public_url,
        "token_hashes": [token_hash(token) for token in config.tokens],
        "expired_token_hashes": [token_hash(token) for token in config.expired_tokens],
        "used_up_token_hashes": [token_hash(token) for token in config.used_up_tokens],
        "disabled_token_hashes": [token_hash(token) for token in config.disabled_tokens],
        "rate_per_s": config.rate_per_s,
        "token_rate_by_hash": {token_hash(token): rate for token, rate in config.token_rates},
        "burst": config.burst,
        "effective_burst": config.effective_burst,
        "rate_window": config.rate_window,
        "hang_s": config.hang_s,
        "seed": config.seed,
        "storage_dir": storage_dir,
        "image_size": config.image_size,
        "log_level": config.log_level,
        "rules": rules.to_json(),
    }
    view.update({name: getattr(config, name) for name in NUMBER_FIELDS})
    view.update({name: getattr(config.faults, field) for name, field in FAULT_FIELDS.items()})
    return view


@overload
def _number(name: str, value: Any, *, nullable: Literal[False]) -> float: ...
@overload
def _number(name: str, value: Any, *, nullable: bool) -> float | None: ...
def _number(name: str, value: Any, *, nullable: bool) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a number or null" if nullable else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} is out of range") from None


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _tokens(name: str, value: Any) -> tuple[str, ...]:
    """A list of tokens; their content is checked by `validate_config`, never echoed."""
    if not isinstance(value, list) or not all(isinstance(token, str) for token in value):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(value)


def _token_rates(value: Any) -> TokenRates:
    """`{"<token>": rate or null}`, the whole mapping (a token not named keeps `rate_per_s`)."""
    if not isinstance(value, dict):
        raise ValueError("token_rates must be an object of token: calls/s or null")
    return tuple(
        (token, _number("token_rates: a rate", rate, nullable=True))
        for token, rate in value.items()
    )


def apply_update(config: EmulatorConfig, update: Any) -> tuple[EmulatorConfig, list[Rule] | None]:
    """The config after a partial update, and the new rules if the update set any.

    Raises ValueError (one line, naming the field) and changes nothing when anything is wrong.
    """
    if not isinstance(update, dict):
        raise ValueError("config update must be a JSON object")
    unknown = set(update) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {', '.join(sorted(map(ascii, unknown)))}")
    changes: dict[str, Any] = {}
    for name in NUMBER_FIELDS:
        if name in update:
            changes[name] = _number(name, update[name], nullable=False)
    for name in NULLABLE_NUMBER_FIELDS:
        if name in update:
            changes[name] = _number(name, update[name], nullable=True)
    for name, choices in CHOICE_FIELDS.items():
        if name in update:
            changes[name] = _choice(name, update[name], choices)
    for name in TOKEN_LIST_FIELDS:
        if name in update:
            changes[name] = _tokens(name, update[name])
    if "token_rates" in update:
        changes["token_rates"] = _token_rates(update["token_rates"])
    fault_changes = {
        field: _number(name, update[name], nullable=False)
        for name, field in FAULT_FIELDS.items()
        if name in update
    }
    if fault_changes:
        changes["faults"] = dataclasses.replace(config.faults, **fault_changes)
    rules = parse_rules(update["rules"]) if "rules" in update else None
    new_config = dataclasses.replace(config, **changes)
    validate_config(new_config)
    return new_config, rules
