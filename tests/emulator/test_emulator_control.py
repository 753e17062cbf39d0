"""The emulator's control API: the ledger, configuration updates and reset, none of which
ever shows a token.

Each test resets the emulator (ledger, callbacks, rules, limiter) and restores the baseline
configuration, so tests do not depend on each other's order.
"""

import hashlib

import pytest
import requests

from tests.support.emulator_blackbox import (
    ALL_TOKENS,
    Emulator,
    assert_envelope,
)

pytestmark = pytest.mark.timeout(60)


# --- ledger, config, reset -----------------------------------------------------------------


def test_ledger_filters_by_seq_and_outcome(emulator: Emulator) -> None:
    emulator.swap(emulator.default_body())
    emulator.swap(emulator.default_body(), token=None)
    emulator.swap(emulator.default_body())

    assert [entry["seq"] for entry in emulator.ledger()] == [1, 2, 3]
    assert [entry["seq"] for entry in emulator.ledger(since=1)] == [2, 3]
    assert [entry["seq"] for entry in emulator.ledger(outcome="success")] == [1, 3]
    assert emulator.ledger(outcome="no_token")[0]["token_hash"] is None
    bad_since = requests.get(emulator.url("/_emulator/ledger?since=x"), timeout=5)
    assert_envelope(bad_since, 400, "bad_request", "since")


def test_tokens_never_appear_in_ledger_or_config(emulator: Emulator) -> None:
    for token in ALL_TOKENS:
        emulator.swap(emulator.default_body(), token=token)

    exposed = (
        requests.get(emulator.url("/_emulator/ledger"), timeout=5).text
        + requests.get(emulator.url("/_emulator/config"), timeout=5).text
        + requests.get(emulator.url("/_emulator/callbacks"), timeout=5).text
    )

    for token in ALL_TOKENS:
        assert token not in exposed
    hashes = {entry["token_hash"] for entry in emulator.ledger()}
    assert hashes == {hashlib.sha256(token.encode()).hexdigest()[:16] for token in ALL_TOKENS}


def test_config_update_is_validated_and_all_or_nothing(emulator: Emulator) -> None:
    url = emulator.url("/_emulator/config")
    before = requests.get(url, timeout=5).json()

    bad_updates = [
        ({"fault_500": 1.5}, "fault_500"),
        ({"fault_500": 1.0, "latency_min_s": 9.0, "latency_max_s": 1.0}, "latency_min_s"),
        ({"rate_per_s": -1}, "rate_per_s"),
        ({"time_scale": "fast"}, "time_scale"),
        ({"tokens": []}, "tokens"),
        ({"host": "0.0.0.0"}, "not updatable"),
        ({"rules": [{"source_contains": "a", "kind": "explode"}]}, "kind"),
        ({"rules": "nope"}, "rules"),
    ]
    for update, field in bad_updates:
        assert_envelope(requests.put(url, json=update, timeout=5), 400, "bad_request", field)
    assert requests.get(url, timeout=5).json() == before

    after = emulator.configure(fault_500=0.25, rate_per_s=3)
    assert after["fault_500"] == 0.25
    assert after["rate_per_s"] == 3
    assert after["effective_burst"] == 3


@pytest.mark.parametrize("value", ["fixed", "Sliding", "", None, 1, ["sliding"]])
def test_rate_window_is_validated_and_shown(emulator: Emulator, value: object) -> None:
    url = emulator.url("/_emulator/config")
    before = requests.get(url, timeout=5).json()

    refused = requests.put(url, json={"rate_per_s": 2, "rate_window": value}, timeout=5)

    assert_envelope(refused, 400, "bad_request", "rate_window must be one of bucket, sliding")
    assert requests.get(url, timeout=5).json() == before
    assert before["rate_window"] == "bucket"
    assert emulator.configure(rate_window="sliding")["rate_window"] == "sliding"


def test_reset_clears_ledger_rules_and_callbacks_but_keeps_config(emulator: Emulator) -> None:
    emulator.configure(latency_max_s=3.0, rules=[{"source_contains": "zzz"}])
    emulator.swap(emulator.default_body())

    assert requests.post(emulator.url("/_emulator/reset"), timeout=5).json() == {"ok": True}

    assert emulator.ledger() == []
    config = requests.get(emulator.url("/_emulator/config"), timeout=5).json()
    assert config["rules"] == []
    assert config["latency_max_s"] == 3.0
