"""Settings refuse what would leak a secret or make one guessable, and say why."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from faceswap_jobs.config import (
    FLOWER_PASSWORD_MIN_BITS,
    WEBHOOK_SECRET_MIN_BITS,
    WEBHOOK_SECRET_MIN_CHARS,
    Settings,
)
from faceswap_jobs.secret_strength import bits_per_char, estimated_bits, weakness

STRONG = "HfPmRcSBgnkgoAO6Av0lStXGSE_09hUCioRR_DBY9mE"
"""Test-only, made with secrets.token_urlsafe(32)."""
SAMPLES_PER_KIND = 2000


def refusal(**overrides: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**overrides)
    return str(caught.value)


# --- base URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["api_base_url", "callback_base_url"])
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "not file://"),
        ("ftp://files.example.com", "not ftp://"),
        ("api.example.com", "http:// or https:// URL"),
        ("https://", "with a host"),
        ("https://user:pw@api.example.com", "credentials"),
        ("https://api.example.com/?token=x", "query or fragment"),
        ("https://api.example.com/#x", "query or fragment"),
        ("https://api.example.com:99999", "invalid port"),
        ("https://api.example.com/\nHost: evil", "control character"),
        ("https://api.example.com\\@evil", "backslash"),
    ],
)
def test_a_base_url_that_is_not_a_plain_http_origin_is_refused(
    field: str, url: str, reason: str
) -> None:
    message = refusal(**{field: url, "webhook_secret": STRONG})
    assert f"{field}: " in message and reason in message


@pytest.mark.parametrize(
    ("field", "exposed"),
    [("api_base_url", "API token"), ("callback_base_url", "signed callback URL")],
)
def test_plain_http_beyond_loopback_needs_the_opt_in(field: str, exposed: str) -> None:
    url = "http://emulator.internal:8700"
    message = refusal(**{field: url, "webhook_secret": STRONG})
    assert exposed in message and "in clear" in message
    assert "FACESWAP_ALLOW_INSECURE_HTTP" in message

    opted_in = Settings(**{field: url, "webhook_secret": STRONG, "allow_insecure_http": True})
    assert getattr(opted_in, field) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8700",
        "http://127.9.8.7",
        "http://localhost:8700/",
        "http://LOCALHOST",
        "http://[::1]:8800",
        "https://api.acedata.cloud",
        "https://hooks.example.com/prefix",
    ],
)
def test_https_anywhere_and_plain_http_to_loopback_are_accepted(url: str) -> None:
    settings = Settings(api_base_url=url, callback_base_url=url, webhook_secret=STRONG)
    assert (settings.api_base_url, settings.callback_base_url) == (url, url)


def test_the_defaults_still_build() -> None:
    assert Settings().api_base_url == "http://127.0.0.1:8700"


def test_the_opt_in_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESWAP_API_BASE_URL", "http://emulator:8700")
    assert "in clear" in refusal()
    monkeypatch.setenv("FACESWAP_ALLOW_INSECURE_HTTP", "true")
    assert Settings().api_base_url == "http://emulator:8700"


# --- the webhook secret ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a" * 16, "too short (16 < 32 characters)"),
        (secrets.token_urlsafe(15), "too short (20 < 32 characters)"),
        ("a" * 64, "too predictable (~0 bits"),
        ("abcd" * 16, "too predictable"),
        ("password" * 8, "too predictable"),
        ("0123456789" * 4, "too predictable (~41 bits of entropy, need 128)"),
        ("0123456789abcdef" * 4, "too predictable"),
        ("", "too short (0 < 32 characters)"),
    ],
)
def test_a_weak_webhook_secret_is_refused_with_the_reason_and_never_echoed(
    secret: str, reason: str
) -> None:
    message = refusal(webhook_secret=secret)
    assert f"webhook_secret: {reason}" in message
    assert "secrets.token_urlsafe(32)" in message
    assert not secret or secret not in message


def test_callback_mode_without_a_secret_says_how_to_make_one() -> None:
    message = refusal(callback_base_url="https://hooks.example.com")
    assert "needs webhook_secret" in message and "token_urlsafe(32)" in message


def test_a_strong_secret_is_checked_even_without_callback_mode() -> None:
    assert "webhook_secret" in refusal(webhook_secret="a" * 40)
    assert Settings(webhook_secret=STRONG).webhook_secret is not None


@pytest.mark.parametrize(
    "make",
    [lambda: secrets.token_urlsafe(32), lambda: secrets.token_hex(32)],
    ids=["token_urlsafe(32)", "token_hex(32)"],
)
def test_every_generated_secret_is_accepted(make: Callable[[], str]) -> None:
    """The documented ways to make a secret must pass every time, with margin to spare."""
    scores = [estimated_bits(make()) for _ in range(SAMPLES_PER_KIND)]
    assert min(scores) > WEBHOOK_SECRET_MIN_BITS * 1.3
    for _ in range(20):
        assert Settings(webhook_secret=make()).webhook_secret is not None


@pytest.mark.parametrize("text", ["password" * 8, STRONG, "ab" * 50 + STRONG, "x", ""])
def test_the_estimate_is_at_most_shannon_times_length(text: str) -> None:
    """A copy is taken only when it is cheaper than its characters, never dearer."""
    assert estimated_bits(text) <= bits_per_char(text) * len(text) + 1e-9


def test_without_repeats_the_estimate_is_shannon_times_length() -> None:
    text = "0123456789abcdefghijklmnopqrstuvwxyz"
    assert estimated_bits(text) == pytest.approx(len(text) * math.log2(len(text)))


def test_weakness_names_counts_not_the_text() -> None:
    assert weakness(STRONG, min_chars=WEBHOOK_SECRET_MIN_CHARS, min_bits=128) is None
    reason = weakness("hunter2hunter2hunter2hunter2hunter2", min_chars=32, min_bits=128)
    assert reason is not None and "hunter" not in reason


# --- the Flower password --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw-1", "too short (10 < 12 characters)"),
        ("aaaaaaaaaaaaaaaa", "too predictable"),
        ("passwordpassword", "too predictable (~28 bits of entropy, need 32)"),
        ("abcabcabcabc", "too predictable"),
        ("has,comma-1234", "no ',' ':' or edge spaces"),
        ("has:colon-1234", "no ',' ':' or edge spaces"),
        (" padded-password ", "no ',' ':' or edge spaces"),
    ],
)
def test_an_obviously_weak_flower_password_is_refused(password: str, reason: str) -> None:
    message = refusal(flower_password=password)
    assert f"flower_password: {reason}" in message
    assert password.strip() not in message


@pytest.mark.parametrize(
    "password", ["flower-pw-8d2e61b7c3", "correct horse battery staple", "Tr0ub4dor&3xyz"]
)
def test_a_person_chosen_flower_password_of_some_length_is_accepted(password: str) -> None:
    assert Settings(flower_password=password).flower_password is not None


def test_generated_flower_passwords_are_accepted() -> None:
    scores = [estimated_bits(secrets.token_urlsafe(16)) for _ in range(SAMPLES_PER_KIND)]
    assert min(scores) > FLOWER_PASSWORD_MIN_BITS * 2
