"""What a backfill will cost before it runs: calls, time and money, from the file and history.

Pure arithmetic over what `backfill --dry-run` gathered: the file's valid rows, the calls per
success the recent days' counters show (`jobs.spend`; a job that fails costs calls too, so this
errs high), the rate bulk work may use, and a price per call when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Estimate:
    rows: int
    valid: int
    calls_per_success: float
    """1.0 when no history says otherwise (`ratio_from` says which)."""
    ratio_from: str
    rate_per_s: float
    """Calls/s the bulk queue may use."""
    rate_from: str
    price_per_call: Decimal | None = None

    @property
    def expected_calls(self) -> int:
        return round(self.valid * self.calls_per_success)

    @property
    def duration_s(self) -> float:
        return self.expected_calls / self.rate_per_s

    @property
    def cost(self) -> Decimal | None:
        if self.price_per_call is None:
            return None
        return self.price_per_call * self.expected_calls

    def lines(self) -> list[str]:
        """The estimate as an operator reads it, one figure a line with where it came from."""
        out = [
            f"rows: {self.rows:,} ({self.valid:,} valid, {self.rows - self.valid:,} rejected)",
            f"expected calls: {self.expected_calls:,} ({self.calls_per_success:.3f} calls per "
            f"success, {self.ratio_from})",
            f"expected duration: {_duration(self.duration_s)} at {self.rate_per_s:g} calls/s "
            f"({self.rate_from})",
        ]
        cost = self.cost
        if cost is not None:
            out.append(f"expected cost: {cost:,.2f} ({self.expected_calls:,} calls at "
                       f"{self.price_per_call} a call)")  # fmt: skip
        else:
            out.append("expected cost: give --price-per-call (or FACESWAP_PRICE_PER_CALL)")
        return out


def _duration(seconds: float) -> str:
    """`2 h 05 min`, `4 min 10 s`, `12 s`."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
