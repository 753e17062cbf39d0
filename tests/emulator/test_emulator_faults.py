"""The emulator's failure modes on demand: its rate limit, injected faults and scripted rules.

Each test resets the emulator (ledger, callbacks, rules, limiter) and restores the baseline
configuration, so tests do not depend on each other's order.
"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.emulator_blackbox import (
    SECOND_TOKEN,
    Emulator,
    assert_envelope,
)

pytestmark = pytest.mark.timeout(60)


# --- rate limit and faults -----------------------------------------------------------------


def test_rate_limit_answers_429_with_integer_retry_after(emulator: Emulator) -> None:
    emulator.configure(rate_per_s=0.2, burst=2)

    statuses = [emulator.swap(emulator.default_body()).status_code for _ in range(2)]
    limited = emulator.swap(emulator.default_body())
    other_token = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)

    assert statuses == [200, 200]
    assert_envelope(limited, 429, "too_many_requests")
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 5
    assert other_token.status_code == 200
    outcomes = [entry["outcome"] for entry in emulator.ledger()]
    assert outcomes == ["success", "success", "rate_limited", "success"]


def test_sliding_window_admits_rate_calls_per_second_and_ledgers_the_rest(
    emulator: Emulator,
) -> None:
    emulator.configure(rate_per_s=5, burst=100, rate_window="sliding")  # burst is ignored
    body = emulator.default_body()

    # Sent at once, so all 8 are judged within one window however long the 5 swaps take.
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: emulator.swap(body), range(8)))

    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code != 200]
    assert (len(ok), len(limited)) == (5, 3)
    for response in limited:
        assert_envelope(response, 429, "too_many_requests")
        retry_after = response.headers["Retry-After"]
        assert retry_after.isdigit() and int(retry_after) >= 1
    ledger = emulator.ledger()
    assert Counter((e["outcome"], e["status"]) for e in ledger) == {
        ("success", 200): 5,
        ("rate_limited", 429): 3,
    }
    assert {e["trace_id"] for e in emulator.ledger(outcome="rate_limited")} == {
        r.json()["trace_id"] for r in limited
    }
    assert {e["task_id"] for e in emulator.ledger(outcome="success")} == {
        r.json()["task_id"] for r in ok
    }


@pytest.mark.parametrize(
    ("fault", "status", "code", "message"),
    [
        ("fault_500", 500, "api_error", "internal error"),
        ("fault_429", 429, "too_many_requests", None),
    ],
)
def test_status_faults_at_rate_one(
    emulator: Emulator, fault: str, status: int, code: str, message: str | None
) -> None:
    emulator.configure(**{fault: 1.0})

    responses = [emulator.swap(emulator.default_body()) for _ in range(3)]

    for response in responses:
        assert_envelope(response, status, code, message)
    if status == 429:
        assert {response.headers["Retry-After"] for response in responses} == {"1"}
    assert [entry["outcome"] for entry in emulator.ledger()] == [fault] * 3


def test_injected_429_retry_after_is_scaled_and_rounded_up(emulator: Emulator) -> None:
    emulator.configure(fault_429=1.0, retry_after_s=2500.0)

    response = emulator.swap(emulator.default_body())

    assert_envelope(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == "3"


def test_hang_fault_outlasts_the_client_timeout(emulator: Emulator) -> None:
    emulator.configure(fault_hang=1.0)

    with pytest.raises(requests.ReadTimeout):
        emulator.swap(emulator.default_body(), timeout_s=0.5)

    [entry] = emulator.ledger()
    assert entry["outcome"] == "hang"
    assert entry["status"] is None
    assert requests.get(emulator.url("/_emulator/healthz"), timeout=5).json() == {"ok": True}


def test_reset_fault_breaks_the_connection(emulator: Emulator) -> None:
    emulator.configure(fault_reset=1.0)

    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        emulator.swap(emulator.default_body())

    [entry] = emulator.ledger()
    assert entry["outcome"] == "reset"
    assert entry["status"] is None
    assert requests.get(emulator.url("/_emulator/healthz"), timeout=5).json() == {"ok": True}


def test_malformed_fault_alternates_html_and_json_without_image_url(emulator: Emulator) -> None:
    emulator.configure(fault_malformed=1.0)

    first = emulator.swap(emulator.default_body())
    second = emulator.swap(emulator.default_body())

    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/html")
    assert first.text.lstrip().startswith("<!DOCTYPE html>")
    assert second.status_code == 200
    assert "image_url" not in second.json()
    assert [entry["outcome"] for entry in emulator.ledger()] == ["malformed", "malformed"]


def test_scripted_rule_fires_its_times_then_stops(emulator: Emulator) -> None:
    rule = {
        "source_contains": "astronaut-gray",
        "status": 400,
        "code": "bad_request",
        "message": "face not found",
        "times": 2,
    }
    emulator.configure(rules=[rule])
    chosen = emulator.default_body(source_image_url=emulator.sample("astronaut-gray.png"))

    results = [emulator.swap(chosen) for _ in range(3)]
    other = emulator.swap(emulator.default_body())

    assert_envelope(results[0], 400, "bad_request", "face not found")
    assert_envelope(results[1], 400, "bad_request", "face not found")
    assert results[2].status_code == 200
    assert other.status_code == 200
    outcomes = [entry["outcome"] for entry in emulator.ledger()]
    assert outcomes == ["rule", "rule", "success", "success"]
    config = requests.get(emulator.url("/_emulator/config"), timeout=5).json()
    assert config["rules"][0]["times"] == 0


def test_scripted_429_rule_sends_retry_after(emulator: Emulator) -> None:
    emulator.configure(
        rules=[{"source_contains": "", "status": 429, "code": "too_many_requests", "times": 1}]
    )

    response = emulator.swap(emulator.default_body())

    assert_envelope(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == "1"


def test_scripted_reset_rule(emulator: Emulator) -> None:
    emulator.configure(rules=[{"source_contains": "astronaut", "kind": "reset", "times": 1}])

    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        emulator.swap(emulator.default_body())

    assert emulator.swap(emulator.default_body()).status_code == 200
    assert [entry["outcome"] for entry in emulator.ledger()] == ["rule", "success"]
