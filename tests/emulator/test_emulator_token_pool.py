"""Several tokens on one emulator, as a token pool meets the provider: each token's own rate
limit (`token_rates`), and tokens revoked and restored at runtime through `PUT /_emulator/config`.

Rates are chosen so that counts are exact whatever the machine's speed: a bucket at 0.01 calls/s
refills one call per 100 s, longer than a test may run, so it admits exactly its burst.
"""

import json
from collections import Counter
from typing import Any

import pytest
import requests

from faceswap_jobs.emulator.config import EmulatorConfig
from faceswap_jobs.emulator.limiter import PerTokenLimiter
from tests.support.emulator_blackbox import (
    DISABLED_TOKEN,
    EXPIRED_TOKEN,
    SECOND_TOKEN,
    TOKEN,
    USED_UP_TOKEN,
    Emulator,
    assert_envelope,
    token_hash,
)

pytestmark = pytest.mark.timeout(60)

SLOW_PER_S = 0.01
"""A rate that never refills within a test: a bucket at it admits its burst and nothing more."""
SECRET = "pool-secret-token-5c2e8a"
"""Distinctive, so a refusal that repeated a token would be caught."""


def _outcomes(emulator: Emulator) -> dict[str, Counter[str]]:
    """Ledger outcomes per token hash."""
    by_token: dict[str, Counter[str]] = {}
    for call in emulator.ledger():
        by_token.setdefault(call["token_hash"], Counter())[call["outcome"]] += 1
    return by_token


def _view(emulator: Emulator) -> dict[str, Any]:
    response = requests.get(emulator.url("/_emulator/config"), timeout=5)
    assert response.status_code == 200
    return response.json()


def _swap_each(emulator: Emulator, tokens: tuple[str, ...], calls: int) -> None:
    """`calls` calls per token, interleaved, so neither token gets the emulator to itself."""
    for _ in range(calls):
        for token in tokens:
            assert emulator.swap(emulator.default_body(), token=token).status_code in (200, 429)


# --- each token at its own rate --------------------------------------------------------------


def test_a_named_token_has_its_own_rate_the_others_keep_rate_per_s(emulator: Emulator) -> None:
    view = emulator.configure(rate_per_s=SLOW_PER_S, token_rates={SECOND_TOKEN: 20})

    _swap_each(emulator, (TOKEN, SECOND_TOKEN), 10)

    outcomes = _outcomes(emulator)
    assert outcomes[token_hash(TOKEN)] == Counter(success=1, rate_limited=9)  # bucket of 1
    assert outcomes[token_hash(SECOND_TOKEN)] == Counter(success=10)  # bucket of 20: one second's
    assert view["token_rate_by_hash"] == {token_hash(SECOND_TOKEN): 20.0}


def test_two_named_tokens_at_2_and_20_per_s(emulator: Emulator) -> None:
    emulator.configure(token_rates={TOKEN: 2, SECOND_TOKEN: 20})

    _swap_each(emulator, (TOKEN, SECOND_TOKEN), 20)

    # Buckets of 2 and 20: SECOND_TOKEN's holds all its calls; TOKEN's would need 9 s of
    # refill for all of its 20, while the 40 calls take a small fraction of a second.
    outcomes = _outcomes(emulator)
    assert outcomes[token_hash(SECOND_TOKEN)] == Counter(success=20)
    assert outcomes[token_hash(TOKEN)]["success"] >= 2
    assert outcomes[token_hash(TOKEN)]["rate_limited"] >= 1
    assert outcomes[token_hash(TOKEN)].total() == 20


def test_a_named_token_may_be_unlimited_and_a_set_burst_applies_to_every_rate(
    emulator: Emulator,
) -> None:
    emulator.configure(
        rate_per_s=SLOW_PER_S, burst=3, token_rates={TOKEN: None, SECOND_TOKEN: SLOW_PER_S}
    )

    _swap_each(emulator, (TOKEN, SECOND_TOKEN), 5)

    outcomes = _outcomes(emulator)
    assert outcomes[token_hash(TOKEN)] == Counter(success=5)
    assert outcomes[token_hash(SECOND_TOKEN)] == Counter(success=3, rate_limited=2)


def test_the_mapping_is_replaced_whole(emulator: Emulator) -> None:
    emulator.configure(rate_per_s=SLOW_PER_S, token_rates={TOKEN: 50, SECOND_TOKEN: 50})

    view = emulator.configure(token_rates={SECOND_TOKEN: 50})
    _swap_each(emulator, (TOKEN,), 3)

    assert view["token_rate_by_hash"] == {token_hash(SECOND_TOKEN): 50.0}
    assert _outcomes(emulator)[token_hash(TOKEN)] == Counter(success=1, rate_limited=2)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_sliding_window_and_bucket_size_follow_each_tokens_rate() -> None:
    config = EmulatorConfig(
        rate_per_s=4.0, token_rates=(("a", 1.0), ("b", 20.0), ("c", None)), rate_window="sliding"
    )
    limiter = PerTokenLimiter(FakeClock())

    def admitted(token: str) -> int:
        rate = config.rate_for(token)
        assert rate is not None
        return sum(
            limiter.acquire(token, config.rate_window, rate, config.burst_for(rate)) == 0.0
            for _ in range(30)
        )

    assert [admitted(token) for token in ("a", "b", "other")] == [1, 20, 4]
    assert config.rate_for("c") is None
    assert [config.burst_for(config.rate_for(t)) for t in ("a", "b", "other")] == [1.0, 20.0, 4.0]
    assert EmulatorConfig(burst=2.0, token_rates=(("b", 20.0),)).burst_for(20.0) == 2.0


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "mentions"),
    [
        ({"token_rates": [SECRET]}, "token_rates must be an object"),
        ({"token_rates": {SECRET: 0}}, "token_rates: a rate must be a finite number > 0"),
        ({"token_rates": {SECRET: -2}}, "token_rates: a rate must be a finite number > 0"),
        ({"token_rates": {SECRET: "fast"}}, "token_rates: a rate must be a number or null"),
        ({"token_rates": {SECRET: True}}, "token_rates: a rate must be a number or null"),
        ({"token_rates": {SECRET: [5]}}, "token_rates: a rate must be a number or null"),
        ({"token_rates": {"": 5}}, "token_rates: every token must be a string"),
        ({"token_rates": {f" {SECRET}": 5}}, "token_rates: a token must not start or end"),
        ({"token_rates": {SECRET * 200: 5}}, "token_rates: every token must be a string"),
        ({"tokens": []}, "tokens: at least one accepted token"),
        ({"tokens": SECRET}, "tokens must be a list of strings"),
        ({"tokens": {SECRET: 1}}, "tokens must be a list of strings"),
        ({"used_up_tokens": [SECRET, 1]}, "used_up_tokens must be a list of strings"),
        ({"expired_tokens": [SECRET, ""]}, "expired_tokens: every token must be a string"),
        ({"disabled_tokens": [f"{SECRET}\n"]}, "disabled_tokens: a token must not start or end"),
        ({"disabled_tokens": None}, "disabled_tokens must be a list of strings"),
        # all or nothing: the valid revocation is not applied with the bad rate
        (
            {"used_up_tokens": [USED_UP_TOKEN, SECOND_TOKEN], "token_rates": {SECRET: 0}},
            "token_rates: a rate",
        ),
        ({"tokens": [TOKEN, SECRET], "rate_per_s": 0}, "rate_per_s"),
    ],
)
def test_token_updates_are_validated_all_or_nothing_and_never_echo_a_token(
    emulator: Emulator, update: dict[str, Any], mentions: str
) -> None:
    before = _view(emulator)

    refused = requests.put(emulator.url("/_emulator/config"), json=update, timeout=5)

    assert_envelope(refused, 400, "bad_request", mentions)
    assert SECRET not in refused.text
    assert _view(emulator) == before
    assert emulator.swap(emulator.default_body(), token=SECOND_TOKEN).status_code == 200


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_rate_is_refused(emulator: Emulator, literal: str) -> None:
    before = _view(emulator)
    body = f'{{"token_rates": {{{json.dumps(SECRET)}: {literal}}}}}'

    refused = requests.put(emulator.url("/_emulator/config"), data=body, timeout=5)

    assert_envelope(refused, 400, "bad_request", "token_rates: a rate must be a finite number")
    assert SECRET not in refused.text
    assert _view(emulator) == before


# --- revoking and restoring tokens -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "status", "code"),
    [
        ("used_up_tokens", 403, "used_up"),
        ("expired_tokens", 401, "token_expired"),
        ("disabled_tokens", 403, "disabled"),
    ],
)
def test_a_token_revoked_mid_run_is_refused_until_restored(
    emulator: Emulator, field: str, status: int, code: str
) -> None:
    baseline = {
        "used_up_tokens": [USED_UP_TOKEN],
        "expired_tokens": [EXPIRED_TOKEN],
        "disabled_tokens": [DISABLED_TOKEN],
    }[field]
    before = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)

    revoked_view = emulator.configure(**{field: [*baseline, SECOND_TOKEN]})
    revoked = [emulator.swap(emulator.default_body(), token=SECOND_TOKEN) for _ in range(3)]
    other = emulator.swap(emulator.default_body(), token=TOKEN)
    restored_view = emulator.configure(**{field: baseline})
    after = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)

    assert before.status_code == 200 and other.status_code == 200 and after.status_code == 200
    for response in revoked:
        assert_envelope(response, status, code)
    hashes = f"{field.removesuffix('s')}_hashes"
    assert revoked_view[hashes] == [token_hash(t) for t in [*baseline, SECOND_TOKEN]]
    assert restored_view[hashes] == [token_hash(t) for t in baseline]
    second = token_hash(SECOND_TOKEN)
    ledger = [c["outcome"] for c in emulator.ledger() if c["token_hash"] == second]
    assert ledger == ["success", code, code, code, "success"]


def test_the_accepted_tokens_can_be_replaced(emulator: Emulator) -> None:
    fresh = "fresh-pool-token-7b41"

    view = emulator.configure(tokens=[TOKEN, fresh])
    dropped = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)
    added = emulator.swap(emulator.default_body(), token=fresh)
    emulator.configure(tokens=[TOKEN, SECOND_TOKEN])
    back = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)
    refused_again = emulator.swap(emulator.default_body(), token=fresh)

    assert view["token_hashes"] == [token_hash(TOKEN), token_hash(fresh)]
    assert_envelope(dropped, 401, "invalid_token")
    assert added.status_code == 200 and back.status_code == 200
    assert_envelope(refused_again, 401, "invalid_token")


def test_a_revoked_token_spends_none_of_its_rate(emulator: Emulator) -> None:
    emulator.configure(token_rates={SECOND_TOKEN: SLOW_PER_S})
    emulator.configure(used_up_tokens=[USED_UP_TOKEN, SECOND_TOKEN])
    for _ in range(3):
        assert_envelope(emulator.swap(emulator.default_body(), token=SECOND_TOKEN), 403, "used_up")
    emulator.configure(used_up_tokens=[USED_UP_TOKEN])

    first = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)
    second = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)

    assert first.status_code == 200
    assert_envelope(second, 429, "too_many_requests")


# --- what the view shows ---------------------------------------------------------------------


def test_the_view_shows_token_hashes_only(emulator: Emulator) -> None:
    emulator.configure(
        token_rates={TOKEN: 2, SECOND_TOKEN: None, SECRET: 7.5},
        tokens=[TOKEN, SECOND_TOKEN, SECRET],
        used_up_tokens=[USED_UP_TOKEN, SECRET],
    )
    emulator.swap(emulator.default_body(), token=SECRET)

    response = requests.get(emulator.url("/_emulator/config"), timeout=5)
    exposed = response.text + requests.get(emulator.url("/_emulator/ledger"), timeout=5).text

    view = response.json()
    assert view["token_rate_by_hash"] == {
        token_hash(TOKEN): 2.0,
        token_hash(SECOND_TOKEN): None,
        token_hash(SECRET): 7.5,
    }
    assert "token_rates" not in view and "tokens" not in view
    assert view["used_up_token_hashes"] == [token_hash(USED_UP_TOKEN), token_hash(SECRET)]
    for token in (TOKEN, SECOND_TOKEN, SECRET, USED_UP_TOKEN):
        assert token not in exposed
