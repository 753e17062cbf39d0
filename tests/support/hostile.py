"""Hypothesis strategies for what arrives from outside: callback bodies in the vendor's shape,
with hostile values mixed in."""

from __future__ import annotations

from hypothesis import strategies as st

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
