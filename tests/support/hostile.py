"""Hypothesis strategies for what arrives from outside: callback bodies in the vendor's shape,
with hostile values mixed in."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz(examples: int) -> settings:
    """Bounded and repeatable for `make test`: the same examples on every run (a CI run must not
    fail on a case no one has seen; `FUZZ_RANDOM=1` draws new ones, to widen the search by hand),
    no deadline on a shared machine, no example database left behind, and no health check for
    the big or filtered inputs we mean to make."""
    return settings(
        max_examples=examples,
        derandomize=os.environ.get("FUZZ_RANDOM") != "1",
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
BODIES = st.dictionaries(
    st.sampled_from(["success", "task_id", "image_url", "image_width", "image_height",
                     "image_size", "error", "trace_id"]),
    JSON | st.sampled_from(["javascript:alert(1)", "file:///etc/passwd", "https://h/x.png",
                            "http://u:p@h/x.png", "https://h/\u202ex.png", "x" * 5000]),
)  # fmt: skip
