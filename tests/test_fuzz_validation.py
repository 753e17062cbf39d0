"""Property-based: the submit-side validator never raises anything but `InvalidSwapRequest`, and
what it accepts is plain JSON text that reads back as the same request.

The measured attacks of issue 14 (a lone surrogate, metadata 300 deep, DEL, C1 controls, bidi
overrides, zero-width characters, `user:pass@`, `timeout=True`) are a hand corpus first; the
properties then mix them into generated input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.models import SwapRequest
from faceswap_jobs.validation import (
    MAX_ID_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    check_batch_name,
    check_identifier,
    check_metadata,
    submission,
)
from tests.support.hostile import fuzz

FUZZ = fuzz(200)
GOOD = "https://img.example.com/a.png"
HOSTILE_CHARS = [
    "\ud800",  # lone surrogate
    "\udfff",
    "\x00",
    "\x1b",
    "\x7f",  # DEL
    "\x9b",  # C1 CSI
    "\x85",
    "\u202e",  # bidi override
    "\u2066",
    "\u200b",  # zero width space
    "\u200d",
    "\ufeff",
    "\u3164",  # Hangul filler: printable, drawn as nothing
    "\ufe0f",
    "\ue000",  # private use
    "\uffff",  # noncharacter
    "\u2028",
    "\n",
    " ",
    "\u00a0",
]


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def _submit(
    source: Any = GOOD,
    target: Any = GOOD,
    *,
    timeout: Any = None,
    key: Any = None,
    metadata: Any = None,
) -> tuple[SwapRequest, dict[str, Any], str | None]:
    return submission(source, target, timeout=timeout, idempotency_key=key, metadata=metadata,
                      read_timeout_s=120.0)  # fmt: skip


@pytest.mark.parametrize("bad", HOSTILE_CHARS)
def test_a_hidden_or_unencodable_character_in_a_url_or_key_is_refused(bad: str) -> None:
    with pytest.raises(InvalidSwapRequest):
        _submit(GOOD + "?x=" + bad)
    with pytest.raises(InvalidSwapRequest):
        _submit(GOOD, f"https://img.example.com/{bad}b.png")
    if bad not in (" ",):
        with pytest.raises(InvalidSwapRequest):
            _submit(key=f"k{bad}k")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"source": "https://user:pass@img.example.com/a.png"}, "credentials"),
        ({"source": "https://user@img.example.com/a.png"}, "credentials"),
        ({"source": "ftp://img.example.com/a.png"}, "http"),
        ({"source": "https:///a.png"}, "host"),
        ({"source": "javascript:alert(1)"}, "http"),
        ({"source": "https://img.example.com:99999/a.png"}, "not a valid URL"),
        ({"source": "https://img%2eexample.com/a.png"}, "host"),
        ({"source": "https://" + "a" * 3000}, "longer than"),
        ({"timeout": True}, "timeout"),
        ({"timeout": float("nan")}, "finite"),
        ({"timeout": 10**400}, "finite"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": [30]}, "timeout"),
        ({"metadata": deep(300)}, "nested deeper"),
        ({"metadata": {"a": [[[[[[[[[1]]]]]]]]]}}, "nested deeper"),
        ({"metadata": {"a": "\ud800"}}, "surrogate"),
        ({"metadata": {"\udc80": 1}}, "surrogate"),
        ({"metadata": {"a": (1, 2)}}, "not JSON"),
        ({"metadata": {"a": {1: 2}}}, "string keys"),
        ({"metadata": {"a": float("inf")}}, "finite"),
        ({"metadata": {"a": 10**6000}}, "larger than"),
        ({"metadata": {"a": "x" * MAX_METADATA_BYTES}}, "larger than"),
        ({"metadata": [1]}, "JSON object"),
        ({"key": "\ud800"}, "idempotency_key"),
        ({"key": 7}, "idempotency_key"),
        ({"key": "  "}, "idempotency_key"),
        ({"key": "k" * (MAX_ID_CHARS + 1)}, "longer than"),
    ],
)
def test_each_measured_attack_is_an_invalid_swap_request(
    kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidSwapRequest) as caught:
        _submit(**kwargs)
    assert fragment in caught.value.message


def test_the_deepest_metadata_allowed_passes_and_one_more_level_does_not() -> None:
    metadata = deep(MAX_METADATA_DEPTH - 1)  # the innermost {} is a level too
    assert _submit(metadata=metadata)[1] == metadata
    with pytest.raises(InvalidSwapRequest):
        _submit(metadata={"b": metadata})


def test_an_integer_id_of_ten_thousand_digits_is_refused_not_a_crash() -> None:
    with pytest.raises(InvalidSwapRequest):
        check_identifier(10**10_000, "id")


# --- properties ----------------------------------------------------------------------------------

hostile_text = st.text(
    alphabet=st.one_of(st.characters(codec=None), st.sampled_from(HOSTILE_CHARS)), max_size=40
)
url_like = st.one_of(
    st.builds(
        lambda scheme, userinfo, host, port, path: f"{scheme}://{userinfo}{host}{port}/{path}",
        st.sampled_from(["http", "https", "HTTPS", "ftp", "javascript", ""]),
        st.sampled_from(["", "user:pass@", "user@", "@", ":@"]),
        st.one_of(st.sampled_from(["img.example.com", "127.0.0.1", "[::1]", "[::1", ""]),
                  hostile_text),
        st.sampled_from(["", ":443", ":0", ":99999", ":x", ":"]),
        hostile_text,
    ),
    hostile_text,
    st.sampled_from([GOOD, "https://img.example.com/ф.png"]),
    st.none(),
    st.integers(),
    st.binary(max_size=20),
)  # fmt: skip
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    hostile_text,
    st.integers(min_value=10**4000, max_value=10**4000 + 5),
)
odd_values = st.one_of(
    st.tuples(st.integers()), st.frozensets(st.integers(), max_size=2), st.binary(max_size=4)
)
metadata_values = st.recursive(
    st.one_of(json_scalars, odd_values),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(hostile_text, st.integers()), children, max_size=4),
    ),
    max_leaves=30,
)
metadata_like = st.one_of(
    st.none(),
    st.dictionaries(hostile_text, metadata_values, max_size=5),
    st.integers(1, 400).map(deep),
    metadata_values,
)
timeouts = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**400), 10**400),
    st.floats(),
    hostile_text,
    st.lists(st.integers(), max_size=2),
)
keys = st.one_of(st.none(), hostile_text, st.integers(), st.text(min_size=250, max_size=300))


valid_urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.sampled_from(["img.example.com", "127.0.0.1", "[::1]", "xn--e1afmkfd.example"]),
    st.text(alphabet=st.characters(categories=["L", "N", "Pd", "Mn"]), max_size=30),
)
valid_metadata = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False,
                  allow_infinity=False), st.text(max_size=20)),
        lambda children: st.one_of(st.lists(children, max_size=3),
                                   st.dictionaries(st.text(max_size=5), children, max_size=3)),
        max_leaves=10,
    ),
    max_size=4,
)  # fmt: skip
FIELDS = ("source", "target", "timeout", "key", "metadata")


@st.composite
def submissions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid submission with some of its fields (often none) replaced by hostile values."""
    args = {
        "source": draw(valid_urls),
        "target": draw(valid_urls),
        "timeout": draw(st.one_of(st.none(), st.floats(1.0, 119.0), st.integers(1, 119))),
        "key": draw(st.one_of(st.none(), st.text(min_size=1, max_size=30))),
        "metadata": draw(st.one_of(st.none(), valid_metadata)),
    }
    hostile = {"source": url_like, "target": url_like, "timeout": timeouts, "key": keys,
               "metadata": metadata_like}  # fmt: skip
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        args[name] = draw(hostile[name])
    return args


@FUZZ
@given(args=submissions())
def test_submit_validation_only_raises_invalid_swap_request_and_accepts_only_plain_json(
    args: dict[str, Any],
) -> None:
    source, target, timeout = args["source"], args["target"], args["timeout"]
    try:
        request, checked, checked_key = _submit(source, target, timeout=timeout, key=args["key"],
                                                metadata=args["metadata"])  # fmt: skip
    except InvalidSwapRequest as exc:
        assert isinstance(exc.message, str) and exc.message
        exc.message.encode()  # a reason can always be stored and shown
        event("refused")
        return
    event("accepted")
    body = request.body()
    text = json.dumps([body, checked, checked_key], ensure_ascii=False, allow_nan=False)
    assert len(text.encode()) < 2 * MAX_METADATA_BYTES + 3 * 2048 + MAX_ID_CHARS * 4 + 100
    again_body, again_metadata, again_key = json.loads(text)
    assert SwapRequest.parse(again_body) == request
    assert again_metadata == checked and again_key == checked_key
    for url in (request.source_image_url, request.target_image_url):
        assert url.lower().startswith(("http://", "https://")) and "@" not in url.split("/")[2]
        assert url.isprintable()
    if checked_key is not None:
        assert checked_key.isprintable() and 0 < len(checked_key) <= MAX_ID_CHARS
    if request.timeout is not None:
        assert math.isfinite(request.timeout) and not isinstance(timeout, bool)


@FUZZ
@given(metadata=metadata_like)
def test_metadata_check_only_raises_invalid_swap_request(metadata: Any) -> None:
    try:
        checked = check_metadata(metadata)
    except InvalidSwapRequest:
        return
    encoded = json.dumps(checked, ensure_ascii=False, allow_nan=False).encode()
    assert len(encoded) <= MAX_METADATA_BYTES
    assert json.loads(encoded) == checked


@FUZZ
@given(value=st.one_of(keys, st.floats(), st.booleans(), st.lists(st.text(), max_size=2)))
def test_identifier_check_only_raises_invalid_swap_request(value: Any) -> None:
    try:
        text = check_identifier(value, "id")
    except InvalidSwapRequest:
        return
    assert text is None or (text.isprintable() and len(text) <= MAX_ID_CHARS)
    if text is not None:
        text.encode()


@FUZZ
@given(name=st.one_of(hostile_text, st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
                      st.integers(), st.none()))  # fmt: skip
def test_batch_names_are_exactly_the_safe_alphabet(name: Any) -> None:
    try:
        checked = check_batch_name(name)
    except InvalidSwapRequest:
        assert not (isinstance(name, str) and name.isascii() and 0 < len(name) <= 64
                    and all(ch.isalnum() or ch in "_.-" for ch in name))  # fmt: skip
        return
    assert checked == name and ":" not in name and 1 <= len(name) <= 64
