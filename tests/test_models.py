"""Validation refuses bad input with a clear message before anything is enqueued."""

from __future__ import annotations

import pytest

from faceswap_jobs.config import Settings
from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.models import MAX_URL_LENGTH, SwapRequest
from faceswap_jobs.validation import check_metadata

GOOD = "https://cdn.example.com/a.png"
STRONG_SECRET = "1QyzE0KhFf9KFwz6gpZg02LKm0_4KfXjR1uwfT1umjc"
"""Test-only, made with secrets.token_urlsafe(32)."""


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"source_image_url": "ftp://x/a.png", "target_image_url": GOOD}, "source_image_url"),
        ({"source_image_url": GOOD, "target_image_url": "file:///etc/passwd"}, "target_image_url"),
        ({"source_image_url": GOOD, "target_image_url": "http://"}, "with a host"),
        ({"source_image_url": "", "target_image_url": GOOD}, "http:// or https://"),
        ({"source_image_url": GOOD + " x", "target_image_url": GOOD}, "whitespace"),
        ({"source_image_url": GOOD + "\x00", "target_image_url": GOOD}, "control"),
        (
            {"source_image_url": "https://x/" + "a" * MAX_URL_LENGTH, "target_image_url": GOOD},
            "longer than",
        ),
        ({"source_image_url": 42, "target_image_url": GOOD}, "must be a string"),
        ({"target_image_url": GOOD}, "source_image_url: Field required"),
        ({"source_image_url": GOOD, "target_image_url": GOOD, "timeout": 0}, "timeout"),
        ({"source_image_url": GOOD, "target_image_url": GOOD, "timeout": 601}, "timeout"),
        ({"source_image_url": GOOD, "target_image_url": GOOD, "timeout": "soon"}, "timeout"),
        (
            {"source_image_url": GOOD, "target_image_url": GOOD, "callback_url": GOOD},
            "callback_url",
        ),
        ({"source_image_url": "http://[::1", "target_image_url": GOOD}, "not a valid URL"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(data: dict, fragment: str) -> None:
    with pytest.raises(InvalidSwapRequest) as caught:
        SwapRequest.parse(data)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("invalid swap request:")


def test_good_request_body_omits_unset_timeout() -> None:
    request = SwapRequest.parse({"source_image_url": GOOD, "target_image_url": GOOD})
    assert request.body() == {"source_image_url": GOOD, "target_image_url": GOOD}
    timed = SwapRequest.parse({"source_image_url": GOOD, "target_image_url": GOOD, "timeout": 90})
    assert timed.body()["timeout"] == 90


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"k": "v" * 5000}, "larger than"),
        ({1: "v"}, "string keys"),
        ({"k": object()}, "not JSON"),
        ({"k": float("nan")}, "not JSON"),
        (["a"], "JSON object"),
    ],
)
def test_metadata_limits(metadata: object, fragment: str) -> None:
    with pytest.raises(InvalidSwapRequest) as caught:
        check_metadata(metadata)  # type: ignore[arg-type]
    assert fragment in str(caught.value)


def test_metadata_ok() -> None:
    assert check_metadata(None) == {}
    assert check_metadata({"row": 7, "tags": ["a"]}) == {"row": 7, "tags": ["a"]}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"read_timeout_s": 200, "soft_time_limit_s": 170}, "read_timeout_s"),
        ({"soft_time_limit_s": 200, "time_limit_s": 190}, "soft_time_limit_s"),
        ({"time_limit_s": 4000, "visibility_timeout_s": 3600}, "time_limit_s"),
        ({"max_countdown_s": 3600}, "max_countdown_s"),
        ({"retry_after_cap_s": 700}, "retry_after_cap_s"),
    ],
)
def test_settings_refuse_time_limits_that_do_not_nest(overrides: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Settings(**overrides)


def test_settings_never_print_the_token() -> None:
    settings = Settings(api_token="very-secret-token-value", flower_password="pw-secret-value")
    assert "very-secret-token-value" not in repr(settings)
    assert "pw-secret-value" not in str(settings)


@pytest.mark.parametrize("password", ["", "short", "has,comma-123", "has:colon-123", " padded-pw "])
def test_flower_password_must_survive_flowers_credential_format(password: str) -> None:
    with pytest.raises(ValueError, match="flower_password"):
        Settings(flower_password=password)


@pytest.mark.parametrize(
    ("overrides", "threads"),
    [
        ({}, 64),
        ({"max_in_flight": 5000}, 2000),
        ({"worker_concurrency": 7}, 7),
        (
            {"callback_base_url": "https://hooks.example", "webhook_secret": STRONG_SECRET,
             "max_in_flight": 5000},
            32,
        ),
    ],
)  # fmt: skip
def test_worker_threads_are_sized_from_the_in_flight_cap(overrides: dict, threads: int) -> None:
    assert Settings(**overrides).concurrency == threads


@pytest.mark.parametrize(
    ("overrides", "wait_s"),
    [
        ({}, 6.4),
        ({"max_in_flight": 1600, "rate_per_s": 20}, 80.0),
        ({"worker_concurrency": 4, "rate_per_s": 20}, 2.0),
    ],
)
def test_a_full_pool_waits_its_turn_at_the_rate(overrides: dict, wait_s: float) -> None:
    assert Settings(**overrides).rate_wait_s == pytest.approx(wait_s)


def test_callback_mode_needs_a_real_secret() -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        Settings(callback_base_url="https://hooks.example", webhook_secret="short")
