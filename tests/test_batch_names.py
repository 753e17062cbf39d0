"""A batch name is part of Redis keys: only `[A-Za-z0-9_.-]{1,64}` is accepted, before anything
is read or written."""

from __future__ import annotations

import pytest

from faceswap_jobs.config import Settings
from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.producer.batch import submit_many
from faceswap_jobs.validation import check_batch_name

REFUSED = ["nightly:rejects", "nightly:rows:0", "[/]", "", "a\nb", "x" * 65, "naïve", None, 7]


@pytest.mark.parametrize("name", REFUSED)
def test_a_name_that_could_reach_another_batch_s_keys_is_refused(name: object) -> None:
    with pytest.raises(InvalidSwapRequest):
        check_batch_name(name)
    unreachable = Settings(redis_url="redis://127.0.0.1:1/0", redis_retry_s=0)
    with pytest.raises(InvalidSwapRequest):
        submit_many([], batch=name, settings=unreachable)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["nightly", "2026-12-03.backfill_1", "x" * 64])
def test_plain_names_pass(name: str) -> None:
    assert check_batch_name(name) == name
