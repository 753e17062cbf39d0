"""Which fault, if any, a call suffers: scripted rules first, then one random draw.

Rules let a test force an answer for one chosen job (matched by a substring of its
source_image_url); random faults give soak tests a steady rate of trouble. Both produce a
`Fault`, which the swap flow carries out without caring where it came from.
"""

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from .config import FaultRates
from .wire import is_wire_safe

FAULT_KINDS = ("status", "hang", "reset", "malformed")


@dataclass(frozen=True)
class Fault:
    """A fault to carry out: an error status, a hang, a reset or a malformed 200."""

    kind: str
    outcome: str
    status: int = 500
    code: str = "api_error"
    message: str = "internal error"
    retry_after_s: int | None = None


@dataclass
class Rule:
    """A scripted fault; `times` counts down to 0, None fires forever."""

    source_contains: str
    kind: str = "status"
    status: int = 500
    code: str = "api_error"
    message: str = "scripted error"
    times: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as shown by `GET /_emulator/config`."""
        return asdict(self)


def retry_after_header_s(retry_after_s: float, time_scale: float) -> int:
    """Retry-After of an injected 429: scaled, whole seconds rounded up, at least 1."""
    return max(1, math.ceil(retry_after_s * time_scale))


def draw_fault(
    rng: random.Random, rates: FaultRates, retry_after_s: float, time_scale: float
) -> Fault | None:
    """One uniform draw shared by all faults, so their rates add up instead of compounding.

    Bands are laid out in FaultRates' field order; if rates sum above 1 the later ones starve.
    """
    draw = rng.random()
    bands = (
        (rates.status_429, "fault_429"),
        (rates.status_500, "fault_500"),
        (rates.hang, "hang"),
        (rates.reset, "reset"),
        (rates.malformed, "malformed"),
    )
    upper = 0.0
    for rate, outcome in bands:
        upper += rate
        if draw < upper:
            return _random_fault(outcome, retry_after_s, time_scale)
    return None


def _random_fault(outcome: str, retry_after_s: float, time_scale: float) -> Fault:
    if outcome == "fault_429":
        return Fault(
            kind="status",
            outcome=outcome,
            status=429,
            code="too_many_requests",
            message="too many requests",
            retry_after_s=retry_after_header_s(retry_after_s, time_scale),
        )
    if outcome == "fault_500":
        return Fault(kind="status", outcome=outcome)
    return Fault(kind=outcome, outcome=outcome)


def _field(raw: dict[str, Any], name: str, kind: type, default: Any, *, nullable: bool) -> Any:
    value = raw.get(name, default)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"rule {name} must be a {kind.__name__}, got {value!r}")
    return value


def parse_rule(raw: Any) -> Rule:
    """Validate one rule object from `PUT /_emulator/config`."""
    if not isinstance(raw, dict):
        raise ValueError("each rule must be a JSON object")
    unknown = set(raw) - {"source_contains", "kind", "status", "code", "message", "times"}
    if unknown:
        raise ValueError(f"unknown rule fields: {', '.join(sorted(map(ascii, unknown)))}")
    rule = Rule(
        source_contains=_field(raw, "source_contains", str, None, nullable=False),
        kind=_field(raw, "kind", str, "status", nullable=False),
        status=_field(raw, "status", int, 500, nullable=False),
        code=_field(raw, "code", str, "api_error", nullable=False),
        message=_field(raw, "message", str, "scripted error", nullable=False),
        times=_field(raw, "times", int, None, nullable=True),
    )
    if rule.kind not in FAULT_KINDS:
        raise ValueError(f"rule kind must be one of {', '.join(FAULT_KINDS)}")
    if not 400 <= rule.status <= 599:
        raise ValueError(f"rule status must be between 400 and 599, got {rule.status}")
    if rule.times is not None and rule.times < 0:
        raise ValueError("rule times must be >= 0 or null")
    if not is_wire_safe(rule.to_json()):
        raise ValueError("rule strings must be valid UTF-8")
    return rule


def parse_rules(raw: Any) -> list[Rule]:
    """Validate the `rules` list of `PUT /_emulator/config`."""
    if not isinstance(raw, list):
        raise ValueError("rules must be a list")
    return [parse_rule(item) for item in raw]


class RuleBook:
    """The scripted rules in force; the first live rule matching a call fires."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []

    def replace(self, rules: list[Rule]) -> None:
        """Install a new rule list (what `PUT /_emulator/config` does)."""
        self._rules = list(rules)

    def clear(self) -> None:
        """Forget every rule."""
        self._rules = []

    def to_json(self) -> list[dict[str, Any]]:
        """The rules with their remaining `times`."""
        return [rule.to_json() for rule in self._rules]

    def match(self, source_image_url: str) -> Fault | None:
        """The fault of the first matching rule with `times` left, using one of them up."""
        for rule in self._rules:
            if rule.source_contains not in source_image_url:
                continue
            if rule.times is not None:
                if rule.times <= 0:
                    continue
                rule.times -= 1
            retry_after_s = 1 if rule.kind == "status" and rule.status == 429 else None
            return Fault(
                kind=rule.kind,
                outcome="rule",
                status=rule.status,
                code=rule.code,
                message=rule.message,
                retry_after_s=retry_after_s,
            )
        return None
