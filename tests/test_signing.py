"""Callback URLs name one submission of one job: any change to one is a refusal, not a crash."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faceswap_jobs.callbacks.settlement import callback_task_id, usable_result
from faceswap_jobs.callbacks.signing import (
    EXPIRY_PARAM,
    SIGNATURE_PARAM,
    SUBMISSION_PARAM,
    Refused,
    Ticket,
    callback_url,
    new_submission,
    sign,
    ticket_for,
    verify,
)
from tests.support.hostile import BODIES, fuzz

SECRET = "kR3v9TqL2xWm8ZpN4bYc7HdJ6fGs1AeQ0uVi5oXt"
NOW = 1_800_000_000.0


def _query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path.rsplit("/", 1)[1], dict(parse_qsl(parts.query))


def test_a_url_names_its_submission() -> None:
    ticket = ticket_for("job-1", new_submission(), 300.0, NOW)
    job_id, query = _query(callback_url("https://hooks.example.com/", SECRET, ticket))

    assert verify(SECRET, job_id, query, NOW) == ticket
    assert ticket.expires_at > NOW + 300.0


def test_submissions_are_unguessable() -> None:
    nonces = {new_submission() for _ in range(1000)}
    assert len(nonces) == 1000
    assert all(len(n) == 16 for n in nonces)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({SUBMISSION_PARAM: "A" * 16}, "bad_signature"),
        ({EXPIRY_PARAM: str(int(NOW) + 10**6)}, "bad_signature"),
        ({SIGNATURE_PARAM: "0" * 64}, "bad_signature"),
        ({SIGNATURE_PARAM: "é"}, "bad_signature"),
        ({SIGNATURE_PARAM: "\udcff" * 64}, "bad_signature"),
        ({EXPIRY_PARAM: "-1"}, "bad_signature"),
        ({EXPIRY_PARAM: "1e9"}, "bad_signature"),
        ({SUBMISSION_PARAM: ""}, "bad_signature"),
        ({SIGNATURE_PARAM: ""}, "unsigned"),
    ],
)
def test_any_change_to_the_url_is_refused(change: dict[str, str], why: str) -> None:
    ticket = ticket_for("job-1", new_submission(), 300.0, NOW)
    job_id, query = _query(callback_url("https://h.example.com", SECRET, ticket))

    with pytest.raises(Refused) as refused:
        verify(SECRET, job_id, query | change, NOW)

    assert refused.value.reason == why
    assert refused.value.status == (401 if why == "unsigned" else 403)


def test_another_job_or_secret_or_a_late_post_is_refused() -> None:
    ticket = ticket_for("job-1", new_submission(), 300.0, NOW)
    _, query = _query(callback_url("https://h.example.com", SECRET, ticket))

    for job_id, secret, now, why in [
        ("job-2", SECRET, NOW, "bad_signature"),
        ("job-1", SECRET[::-1], NOW, "bad_signature"),
        ("job-1", SECRET, ticket.expires_at + 1.0, "expired"),
    ]:
        with pytest.raises(Refused) as refused:
            verify(secret, job_id, query, now)
        assert refused.value.reason == why


def test_fields_cannot_be_shifted_between_job_id_and_submission() -> None:
    """`ab` + `cdef...` and `abc` + `def...` sign differently (fields are length-prefixed)."""
    a = Ticket("job-ab", "cdefghijklmnopqrs", 10)
    b = Ticket("job-abc", "defghijklmnopqrs", 10)
    assert sign(SECRET, a) != sign(SECRET, b)


@fuzz(300)
@given(
    job_id=st.text(max_size=200),
    query=st.dictionaries(
        st.sampled_from([SIGNATURE_PARAM, SUBMISSION_PARAM, EXPIRY_PARAM, "x"]),
        st.text(max_size=80),
    ),
)
def test_hostile_urls_are_refused_never_raised(job_id: str, query: dict[str, str]) -> None:
    with pytest.raises(Refused) as refused:
        verify(SECRET, job_id, query, NOW)
    assert refused.value.status in (401, 403)


@fuzz(500)
@given(body=BODIES)
def test_callback_bodies_give_a_valid_result_or_none(body: dict[str, object]) -> None:
    result = usable_result(body)
    task_id = callback_task_id(body)

    if result is not None:
        assert body["success"] is True
        assert result.image_url.startswith(("http://", "https://"))
        assert len(result.image_url) <= 2048 and "@" not in urlsplit(result.image_url).netloc
    assert task_id is None or (isinstance(task_id, str) and 0 < len(task_id) <= 256)
